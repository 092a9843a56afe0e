"""The HTTP API under test: an app over every database with real OpenBao, a key per role."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from access.runtime import Runtime, compose
from api.app import AppConfig, create_app
from api.demo.inbox import AlertInbox
from keys.provider import KeyBackend
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE, ALL_ROLES, SENSITIVE_CONSENTS
from vault.config import Settings

JUST = {"ticket": "CS-7", "reason": "customer called about their order"}
PERSON = {
    "full_name": ALICE["full_name"],
    "email": ALICE["email"],
    "phone": ALICE["phone"],
    "passport_number": ALICE["passport_number"],
    "face_template": base64.b64encode(ALICE["face_template"]).decode(),  # type: ignore[arg-type]
}


@dataclass
class Api:
    client: FlaskClient
    runtime: Runtime
    keys: dict[str, str]
    database: Database

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def register(self) -> tuple[str, dict[str, str]]:
        r = self.client.post(
            "/v1/subjects",
            headers=self.h("registration-service"),
            json={
                "purpose": "account_registration",
                "external_id": f"ext-{uuid.uuid4().hex[:8]}",
                "fields": PERSON,
                "consents": SENSITIVE_CONSENTS,
            },
        )
        assert r.status_code == 201, r.json
        return r.json["subject_id"], r.json["tokens"]

    def last_event(self) -> dict[str, Any]:
        return self.runtime.audit.events(limit=1)[0]


def build_runtime(database: Database, backend: KeyBackend) -> Runtime:
    runtime = compose(database.engine, backend)
    runtime.policy.seed_default()
    return runtime


@pytest.fixture
def api(openbao: OpenBaoServer, database: Database, tmp_path: Path) -> Iterator[Api]:
    yield from api_over(database, openbao.provider(), tmp_path)


def api_over(database: Database, backend: KeyBackend, tmp_path: Path) -> Iterator[Api]:
    """The app over ``backend`` (e.g. a transit mount of its own, for tests that list
    every key), a key per role."""
    runtime = build_runtime(database, backend)
    keys = {r: runtime.principals.create(f"svc:{r}", [r])[1] for r in ALL_ROLES}
    keys["everything"] = runtime.principals.create("svc:everything", ALL_ROLES)[1]
    _, disabled = runtime.principals.create("svc:gone", ["auditor"])
    runtime.principals.disable("svc:gone")
    keys["disabled"] = disabled
    app = create_app(AppConfig(Settings(home=tmp_path), max_body_bytes=64 * 1024, runtime=runtime))
    yield Api(app.test_client(), runtime, keys, database)


Receiver = AlertInbox  # the demo's receiver: a real HTTP server playing the alert hook


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alerting_api(
    database: Database, backend: KeyBackend, home: Path, receiver: Receiver, **compose_kw: Any
) -> Iterator[Api]:
    """An app whose alert hook posts to ``receiver``; a key per role (``svc:<role>``)."""
    runtime = compose(database.engine, backend, alert_url=receiver.url, **compose_kw)
    runtime.policy.seed_default()
    keys = {r: runtime.principals.create(f"svc:{r}", [r])[1] for r in ALL_ROLES}
    app = create_app(AppConfig(Settings(home=home), runtime=runtime))
    yield Api(app.test_client(), runtime, keys, database)
    runtime.guard.alerts.close()
