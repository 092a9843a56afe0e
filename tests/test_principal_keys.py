"""Issue 22 (4): a service's API key rotates without downtime and may expire.

`rotate_key` gives a new key; the old one keeps working for the overlap, then never — in
this process (its verified-key cache included) and in any other. Every change is audited
and sealed with the principal's grant tag: a DBA who extends an overlap or an expiry with
SQL gets a principal that authenticates nowhere."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from access.errors import AuthenticationFailed, InvalidRequest
from access.runtime import Runtime, compose
from tests.conftest import Database
from tests.test_cli import local_env, run

NAME = "svc:checkout-service"
SHORT = dt.timedelta(seconds=1)


@pytest.fixture
def rt(local_runtime: Runtime) -> Runtime:
    return local_runtime


@pytest.fixture
def other(rt: Runtime, database: Database) -> Iterator[Runtime]:
    """Another worker process over the same database: caches of its own."""
    runtime = compose(database.new_engine(), rt.vault.keys)
    yield runtime
    runtime.vault.engine.dispose()


def _works(runtime: Runtime, key: str) -> bool:
    """Twice, as two requests would: the second may be answered from the worker's cache
    (a request's decision builds the revision's engine, under which keys are cached)."""
    answers = []
    for _ in range(2):
        try:
            answers.append(runtime.principals.authenticate(key).name == NAME)
        except AuthenticationFailed:
            answers.append(False)
        runtime.policy.current()
    assert answers[0] == answers[1]
    return answers[0]


def test_the_old_key_works_during_the_overlap_then_never(rt: Runtime, other: Runtime) -> None:
    _, old = rt.principals.create(NAME, ["checkout-service"])
    assert _works(rt, old) and _works(other, old)  # both have it cached now
    new, until = rt.principals.rotate_key(NAME, "operator:ops", overlap=SHORT)
    assert new != old and until is not None
    assert until <= dt.datetime.now(dt.UTC) + SHORT
    for runtime in (rt, other):
        assert _works(runtime, old) and _works(runtime, new)
    time.sleep((until - dt.datetime.now(dt.UTC)).total_seconds() + 0.1)
    for runtime in (rt, other):  # the cached entry ends with the overlap, too
        assert not _works(runtime, old)
        assert _works(runtime, new)


def test_without_an_overlap_the_old_key_stops_at_once(rt: Runtime, other: Runtime) -> None:
    _, old = rt.principals.create(NAME, ["checkout-service"])
    assert _works(rt, old) and _works(other, old)
    new, until = rt.principals.rotate_key(NAME, overlap=dt.timedelta(0))
    assert until is None
    assert not _works(rt, old) and not _works(other, old)
    assert _works(rt, new) and _works(other, new)
    # A second rotation during an overlap ends the oldest key at once.
    newer, _ = rt.principals.rotate_key(NAME, overlap=dt.timedelta(hours=1))
    third, _ = rt.principals.rotate_key(NAME, overlap=dt.timedelta(hours=1))
    assert not _works(other, new)
    assert _works(other, newer) and _works(other, third)


def test_a_key_with_an_expiry_stops_working_then(rt: Runtime, other: Runtime) -> None:
    with pytest.raises(InvalidRequest):
        rt.principals.create(NAME, ["checkout-service"], expires=dt.timedelta(0))
    _, key = rt.principals.create(NAME, ["checkout-service"], expires=SHORT)
    assert _works(rt, key) and _works(other, key)
    time.sleep(SHORT.total_seconds() + 0.1)
    assert not _works(rt, key) and not _works(other, key)
    # Rotating it brings the service back; an overlap never outlives the old key's expiry.
    new, until = rt.principals.rotate_key(NAME, overlap=dt.timedelta(hours=1))
    assert until is not None and until <= dt.datetime.now(dt.UTC)
    assert _works(other, new) and not _works(other, key)


def test_rotations_are_audited_and_never_name_a_key(rt: Runtime) -> None:
    _, old = rt.principals.create(NAME, ["checkout-service"], expires=dt.timedelta(days=90))
    new, _ = rt.principals.rotate_key(
        NAME, "operator:ops", overlap=dt.timedelta(hours=24), expires=dt.timedelta(days=90)
    )
    events = [e for e in rt.audit.events(limit=100) if e["action"].startswith("principal_")]
    assert [e["action"] for e in events][:2] == ["principal_rotate_key", "principal_create"]
    rotated = events[0]
    assert rotated["principal"] == "operator:ops"
    detail = json.dumps(rotated["outcome"])
    assert NAME in detail and "86400" in detail and str(90 * 86400) in detail
    everything = json.dumps(rt.audit.events(limit=100))
    for key in (old, new):
        assert key not in everything and key.split(".")[1] not in everything
    assert rt.audit.verify().ok


def test_a_disabled_principal_cannot_rotate_its_way_back(rt: Runtime) -> None:
    _, key = rt.principals.create(NAME, ["checkout-service"])
    rt.principals.disable(NAME)
    with pytest.raises(InvalidRequest, match="disabled"):
        rt.principals.rotate_key(NAME)
    assert not _works(rt, key)


def test_an_overlap_or_expiry_extended_with_sql_authenticates_nowhere(
    rt: Runtime, other: Runtime, database: Database
) -> None:
    """The DBA insider: the overlap's end and the expiry are in the principal's grant tag."""
    _, old = rt.principals.create(NAME, ["checkout-service"], expires=dt.timedelta(hours=1))
    new, _ = rt.principals.rotate_key(NAME, overlap=SHORT, expires=dt.timedelta(hours=1))
    time.sleep(SHORT.total_seconds() + 0.1)
    assert not _works(other, old)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE principals SET old_key_until = :t, key_expires_at = :t WHERE name = :n"),
            {"t": later, "n": NAME},
        )
    fresh = compose(database.new_engine(), rt.vault.keys)
    try:
        assert not _works(fresh, old)
        assert not _works(fresh, new)  # the edited row fails its tag: no key of it works
    finally:
        fresh.vault.engine.dispose()


def test_principal_rotate_key_command(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert run(["init"], env)[0] == 0
    code, out, _ = run(
        ["principal", "create", NAME, "--role", "checkout-service", "--expires", "90d", "--json"],
        env,
    )
    assert code == 0, out
    old = json.loads(out)["api_key"]
    code, out, err = run(["principal", "rotate-key", NAME, "--json"], env)
    assert code == 0, err
    rotated = json.loads(out)
    assert rotated["api_key"].startswith("pvk_") and rotated["api_key"] != old
    ends = dt.datetime.fromisoformat(rotated["old_key_until"])
    assert dt.timedelta(hours=23) < ends - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)
    code, out, _ = run(["principal", "rotate-key", NAME, "--overlap", "0s"], env)
    assert code == 0 and "the old key no longer works" in out and "shown once" in out
    code, _, err = run(["principal", "rotate-key", NAME, "--overlap", "soon"], env)
    assert code == 2 and "duration" in err
    code, _, err = run(["principal", "rotate-key", "svc:nobody"], env)
    assert code == 1 and "no principal" in err
