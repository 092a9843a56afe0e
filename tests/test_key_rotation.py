"""Issue 22 (7): ``pii-vault rotate-keys`` — subject keys rotated in Vault, data keys
rewrapped, old versions trimmed; every token still resolves; a data-key row restored
from before the rotation unwraps nothing; a re-run does nothing more. Real OpenBao (a
transit mount of the test's own), SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from sqlalchemy import select, update

from access.runtime import compose
from api.app import AppConfig, create_app
from keys.transit import TransitKeyProvider
from tests.api_support import PERSON, Api, api_over
from tests.conftest import Database, OpenBaoServer
from vault.config import Settings
from vault.key_rotation import KeyRotator
from vault.models import DataKeyRecord


@pytest.fixture
def mount(openbao: OpenBaoServer) -> tuple[str, str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    return openbao.server.bootstrap(name), name


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, mount: tuple[str, str]
) -> Iterator[Api]:
    token, name = mount
    yield from api_over(database, TransitKeyProvider(openbao.addr, token, mount=name), tmp_path)


def _phone(client: Any, api: Api, token: str) -> Any:
    return client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": [token]},
    )


def test_rotation_rewraps_trims_and_keeps_every_token(
    api: Api, openbao: OpenBaoServer, mount: tuple[str, str], tmp_path: Path
) -> None:
    subjects = [api.register() for _ in range(3)]
    sid0 = subjects[0][0]
    with api.database.engine.connect() as conn:
        before = conn.execute(
            select(DataKeyRecord.id, DataKeyRecord.wrapped).where(DataKeyRecord.subject_id == sid0)
        ).all()
    report = KeyRotator(api.runtime.vault).run(0)
    assert sorted(report.rotated) == sorted(s for s, _ in subjects) and not report.failed
    for _sid, tokens in subjects:  # every token resolves as before
        r = _phone(api.client, api, tokens["phone"])
        assert r.status_code == 200 and r.json["results"][0]["value"] == PERSON["phone"], r.json
    # In Vault: a new version, the old one trimmed away.
    root = hvac.Client(url=openbao.addr, token=openbao.server.root_token)
    key = root.secrets.transit.read_key(f"pii-subject-{sid0}", mount_point=mount[1])["data"]
    assert key["latest_version"] == 2 and key["min_decryption_version"] == 2
    assert set(key["keys"]) == {"2"}
    # A data-key row from before the rotation (a restored backup) unwraps nothing.
    with api.database.engine.begin() as conn:
        for dek_id, wrapped in before:
            conn.execute(
                update(DataKeyRecord).where(DataKeyRecord.id == dek_id).values(wrapped=wrapped)
            )
    fresh = compose(
        api.database.new_engine(), TransitKeyProvider(openbao.addr, mount[0], mount=mount[1])
    )
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=fresh)).test_client()
    r = _phone(client, api, subjects[0][1]["phone"])
    assert PERSON["phone"] not in r.get_data(as_text=True), (r.status_code, r.json)
    fresh.vault.engine.dispose()
    # Resumable: nothing is due any more.
    again = KeyRotator(api.runtime.vault).run(86400)
    assert again.rotated == [] and again.current == 3 and not again.failed


def test_rotate_keys_command_is_audited(api: Api) -> None:
    """The command's own path, batch by batch: an operator event before, a completed one after."""
    sid, _ = api.register()
    events: list[tuple[str, list[str]]] = []
    report = KeyRotator(api.runtime.vault).run(
        0,
        subject_id=sid,
        before_batch=lambda ids: events.append(("operator", ids)),
        after_batch=lambda ids: events.append(("completed", ids)),
    )
    assert report.rotated == [sid]
    assert events == [("operator", [sid]), ("completed", [sid])]
