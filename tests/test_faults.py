"""Faults at the database boundary: a key is destroyed only when no committed row needs it.

Reported: the COMMIT of a new subject reached PostgreSQL but its reply was lost; the
service answered 503 and destroyed the subject's key although the row *was* committed,
leaving an active subject whose data nobody could ever read. Here the commit's outcome is
made ambiguous the same way, at the driver boundary: the commit happens, then the call
fails (or the commit never happens and the call fails).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import ORMExecuteState, Session

from keys.provider import KeyBackend
from tests.conftest import Database
from vault.errors import DatabaseUnavailable
from vault.models import Subject
from vault.results import TokenizeRecord
from vault.service import VaultService


class CommitFault:
    """Fail the next commit that stores subjects: after it reached the database, or before."""

    def __init__(self, after: bool) -> None:
        self.after, self.armed = after, False

    @staticmethod
    def wrote(state: ORMExecuteState) -> None:
        # The transaction that stores subjects (not the one recording their key intents).
        if state.is_insert and getattr(state.statement, "table", None) == Subject.__table__:
            state.session.info["wrote"] = True

    def __call__(self, session: Session) -> None:
        if self.armed and session.info.pop("wrote", False):
            self.armed = False
            raise OperationalError("COMMIT", {}, ConnectionResetError("reply lost"))


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[CommitFault]:
    fault = CommitFault(after=request.param == "after")
    name = "after_commit" if fault.after else "before_commit"
    event.listen(Session, "do_orm_execute", CommitFault.wrote)
    event.listen(Session, name, fault)
    yield fault
    event.remove(Session, name, fault)
    event.remove(Session, "do_orm_execute", CommitFault.wrote)


def _rows(database: Database) -> list[str]:
    with database.engine.connect() as conn:
        return list(conn.execute(select(Subject.id)).scalars())


@pytest.mark.parametrize("fault", ["after"], indirect=True)
def test_commit_that_happened_keeps_the_key_and_succeeds(
    service: VaultService, provider: KeyBackend, database: Database, fault: CommitFault
) -> None:
    fault.armed = True
    created = service.create_subject({"email": "kept@example.com"}, external_id="kept-1")
    assert _rows(database) == [created.subject_id]
    assert provider.subject_key_exists(created.subject_id)
    service.cache.clear()
    assert service.detokenize([created.tokens["email"]])[0].value == "kept@example.com"


@pytest.mark.parametrize("fault", ["before"], indirect=True)
def test_commit_that_did_not_happen_leaves_no_key(
    service: VaultService, provider: KeyBackend, database: Database, fault: CommitFault
) -> None:
    fault.armed = True
    with pytest.raises(DatabaseUnavailable):
        service.create_subject({"email": "gone@example.com"}, external_id="gone-1")
    assert _rows(database) == []
    created = service.create_subject({"email": "gone@example.com"}, external_id="gone-1")
    assert _rows(database) == [created.subject_id]  # a retry works: nothing stale blocks it


@pytest.mark.parametrize("fault", ["after"], indirect=True)
def test_batch_whose_commit_happened_keeps_every_key(
    service: VaultService, provider: KeyBackend, database: Database, fault: CommitFault
) -> None:
    records = [
        TokenizeRecord(fields={"email": f"b{i}@example.com"}, external_id=f"b-{i}")
        for i in range(3)
    ]
    fault.armed = True
    results = service.tokenize([service.validator.prepare_record(r) for r in records])
    ids = sorted(str(r.subject_id) for r in results)
    assert sorted(_rows(database)) == ids
    assert all(provider.subject_key_exists(sid) for sid in ids)
