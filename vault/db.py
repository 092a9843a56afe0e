"""Engines and migrations. SQLite by default (WAL, foreign keys, secure_delete); PostgreSQL too."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from vault.errors import ConfigError, DatabaseUnavailable, SchemaNotReady
from vault.watchdog import Watchdog

SQLITE_BEGIN_OPTION = "sqlite_begin"
READ_ONLY = {SQLITE_BEGIN_OPTION: "DEFERRED"}


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


DEFAULT_DB_TIMEOUT = 5.0


def make_engine(
    url: str, *, schema: str | None = None, timeout: float = DEFAULT_DB_TIMEOUT
) -> Engine:
    """An engine for ``url``; ``schema`` pins PostgreSQL's search_path (one schema per test run).

    ``timeout`` bounds every wait on the database, so a request never hangs: a lock is
    waited for at most ``timeout`` seconds (SQLite ``busy_timeout``, PostgreSQL
    ``lock_timeout``), a statement runs at most twice that, a connection is opened within
    ``timeout``, and a PostgreSQL reply that never comes is cut off by the client-side
    watchdog (``vault/watchdog.py``) a little after the statement bound.
    """
    if timeout <= 0:
        raise ConfigError("the database timeout must be positive")
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("PII_VAULT_DATABASE_URL is not a valid database URL") from exc
    # Never put SQL parameters (ciphertext, tokens, ids) into exception messages or logs.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": timeout, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        # No pool_pre_ping: the watchdog pings on checkout itself, under its deadline.
        kwargs["pool_timeout"] = timeout  # waiting for a pooled connection is bounded too
        lock_ms, statement_ms = int(timeout * 1000), int(timeout * 2000)
        options = [
            f"-clock_timeout={lock_ms}",
            f"-cstatement_timeout={statement_ms}",
            f"-cidle_in_transaction_session_timeout={statement_ms * 3}",
        ]
        if schema:
            options.append(f"-csearch_path={schema}")
        given = parsed.query.get("options")  # the URL's own options are kept, and win
        if given:
            options.extend(given if isinstance(given, tuple) else [given])
            parsed = parsed.difference_update_query(["options"])
        kwargs["connect_args"] = {
            "options": " ".join(options),
            "connect_timeout": max(1, round(timeout)),
        }
    else:
        raise ConfigError("PII_VAULT_DATABASE_URL must be a sqlite or postgresql URL")
    try:
        engine = create_engine(parsed, **kwargs)
    except ArgumentError as exc:
        raise ConfigError(
            "PII_VAULT_DATABASE_URL is not a valid database URL (SQLite takes three slashes "
            "before a relative path, sqlite:///vault.db, and four before an absolute one)"
        ) from exc
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            "database driver missing: pip install 'pii-vault[postgres]' for PostgreSQL"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        _private_file(parsed)
        _configure_sqlite(engine, timeout)
    else:
        Watchdog(timeout * 2 + 2).install(engine)
    return engine


def private_directory(path: Path) -> None:
    """The state directory: created 0700, and tightened to 0700 if it is ours and wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)


def _private_file(url: Any) -> None:
    """Create a SQLite database file 0600 before SQLite does (its -wal and -shm files
    take the database file's mode), so nothing of the vault is readable by others."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _configure_sqlite(engine: Engine, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE below is honoured.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock at BEGIN (no lock upgrade failing mid-transaction);
        # read-only transactions ask for DEFERRED and run concurrently under WAL.
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")


def alembic_config(script_location: str = "vault:migrations") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    return cfg


def migrate(engine: Engine, script_location: str = "vault:migrations") -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = alembic_config(script_location)
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except DBAPIError as exc:
        raise DatabaseUnavailable(unreachable(engine, exc, "migration failed")) from exc


def target(engine: Engine) -> str:
    """Where the engine connects, for an error message: never the password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return f"PostgreSQL {url.username or ''}@{where}".replace(" @", " ")


# The driver's own words are kept only for connection failures (no SQL, no values in them).
_CONNECT_WORDS = (
    "connection",
    "connect",
    "authentication",
    "does not exist",
    "unable to open",
    "timeout",
    "timed out",
    "no password",
    "role",
)


def unreachable(engine: Engine, exc: DBAPIError, doing: str = "") -> str:
    """One line that names the cause: the error class and the database it tried."""
    orig = exc.orig if exc.orig is not None else exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    reason = first if any(w in first.lower() for w in _CONNECT_WORDS) else ""
    detail = f"{type(orig).__name__}{': ' + reason if reason else ''}"
    return f"database unavailable ({target(engine)}{', ' + doing if doing else ''}): {detail}"


# Each migration tree and its version table (access/migrations/env.py names its own).
SCHEMAS = (("vault:migrations", "alembic_version"), ("access:migrations", "alembic_version_access"))


@functools.cache
def _script(location: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(location))


def schema_state(engine: Engine) -> str:
    """``ok`` (at head), ``missing`` (never initialised), ``behind`` (older than this
    version: ``pii-vault init`` migrates it) or ``ahead`` (a newer version migrated it:
    this process is the older one of a rolling upgrade)."""
    states = []
    try:
        with engine.connect() as conn:
            for location, table in SCHEMAS:
                current = set(
                    MigrationContext.configure(
                        conn, opts={"version_table": table}
                    ).get_current_heads()
                )
                script = _script(location)
                if not current:
                    states.append("missing")
                elif current == set(script.get_heads()):
                    states.append("ok")
                elif all(_known(script, rev) for rev in current):
                    states.append("behind")
                else:
                    states.append("ahead")
    except DBAPIError as exc:
        raise DatabaseUnavailable(unreachable(engine, exc)) from exc
    for state in ("missing", "behind", "ahead"):
        if state in states:
            return state
    return "ok"


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # an id this version does not know: a newer one wrote it
        return False


def require_schema(engine: Engine) -> str:
    """Start-up of every command but ``init``: the schema must be this version's."""
    state = schema_state(engine)
    if state == "missing":
        raise SchemaNotReady(
            f"the database schema is not initialised ({target(engine)}): run `pii-vault init`"
        )
    if state == "behind":
        raise SchemaNotReady(
            f"the database schema is older than this version ({target(engine)}): run "
            "`pii-vault init`, which migrates it (README: Upgrade)"
        )
    return state
