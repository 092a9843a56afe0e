"""Subject-key rotation for operators (``pii-vault rotate-keys``, issue 22).

A subject is due when its key's newest version is older than the cutoff. Rotating it
adds a version in Vault, rewraps every data key of the subject under it and commits
(``VaultService.rotate_subject_key``), then trims: older versions stop decrypting and
are deleted, so a data-key row restored from before the rotation unwraps nothing. The
values themselves are not re-encrypted (their data keys are the same keys, wrapped
anew), so every token resolves as before.

Resumable: a re-run finds rotated subjects not due; one rotated but not yet trimmed
(a crash between the commit and the trim) is trimmed then — the trim is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select

from keys.provider import KeyRotation
from vault.errors import ConfigError, SubjectShredded, VaultError
from vault.models import STATUS_ACTIVE, Subject
from vault.service import VaultService
from vault.transactions import translating


@dataclass
class RotationReport:
    rotated: list[str] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)  # rotated earlier, trimmed now
    current: int = 0  # not due
    failed: dict[str, str] = field(default_factory=dict)  # subject -> error code


class KeyRotator:
    def __init__(self, vault: VaultService) -> None:
        if not isinstance(vault.keys, KeyRotation):
            raise ConfigError("this key provider cannot rotate subject keys")
        self.vault = vault
        self.keys: KeyRotation = vault.keys

    def subjects(self, subject_id: str | None = None, batch: int = 1000) -> Iterator[list[str]]:
        """Active subjects, in id order, a batch at a time (the database is read once per
        batch, not held open while Vault works)."""
        after = ""
        while True:
            with self.vault.tx.begin(read_only=True) as session:
                query = select(Subject.id).where(Subject.status == STATUS_ACTIVE)
                if subject_id is not None:
                    query = query.where(Subject.id == subject_id)
                ids = list(
                    session.scalars(
                        query.where(Subject.id > after).order_by(Subject.id).limit(batch)
                    )
                )
            if not ids:
                return
            yield ids
            after = ids[-1]

    def run_one(self, subject_id: str, cutoff: float, report: RotationReport) -> None:
        try:
            with translating():
                rotated = self.keys.subject_key_rotated(subject_id)
            if rotated is None:
                raise SubjectShredded("subject key destroyed")
            if rotated < cutoff:
                self.vault.rotate_subject_key(subject_id)
                with translating():
                    self.keys.trim_subject_key(subject_id)
                report.rotated.append(subject_id)
            else:
                with translating():
                    self.keys.trim_subject_key(subject_id)  # idempotent: a crash's leftover
                report.current += 1
        except VaultError as exc:
            report.failed[subject_id] = exc.code

    def run(
        self,
        older_than: float,
        *,
        subject_id: str | None = None,
        progress: Callable[[int], object] = lambda n: None,
        before_batch: Callable[[list[str]], None] = lambda ids: None,
        after_batch: Callable[[list[str]], None] = lambda ids: None,
    ) -> RotationReport:
        """``older_than`` seconds; the callbacks audit each batch and move a progress bar."""
        cutoff = time.time() - older_than
        report = RotationReport()
        for ids in self.subjects(subject_id):
            before_batch(ids)
            done = len(report.rotated)
            for sid in ids:
                self.run_one(sid, cutoff, report)
                progress(1)
            after_batch(report.rotated[done:])
        return report
