"""A subject's attributes beside its fields: minor status and region (issue 19, §6/§7).

They decide what the policy allows (a minor's data needs a guardian; a region decides
what is a transfer), so they change only through here: the privacy office's audited
correction (``GuardedVault.change_attributes``) and the age-out task at majority
(``pii-vault age-out``, daily). Minor status follows the date of birth where one is
stored: a change that contradicts it is refused, the date must be corrected instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from vault.errors import MinorFlagConflicts, ValidationError
from vault.minors import DATE_OF_BIRTH
from vault.models import STATUS_ACTIVE, FieldValue, Subject
from vault.service import VaultService
from vault.validation import REGION


@dataclass(frozen=True)
class Attributes:
    subject_id: str
    is_minor: bool
    region: str | None


class SubjectAttributes:
    def __init__(self, vault: VaultService) -> None:
        self.vault = vault

    def _dob_minor(self, subject_id: str) -> bool | None:
        """What the stored date of birth says (decrypted here only), or None without one."""
        values = self.vault.reveal(subject_id, [DATE_OF_BIRTH])
        stored = values.get(DATE_OF_BIRTH)
        if not isinstance(stored, str):
            return None
        return self.vault.validator.majority.minor(stored)

    def change(
        self, subject_id: str, *, is_minor: bool | None = None, region: str | None = None
    ) -> tuple[Attributes, list[str]]:
        """Apply the change; returns the attributes now and the names of those changed."""
        if is_minor is None and region is None:
            raise ValidationError("nothing to change", {"attributes": "empty"})
        if region is not None and not REGION.fullmatch(region):
            raise ValidationError("invalid region", {"region": "invalid_format"})
        if region is not None and not self.vault.key_fits_region(subject_id, region):
            raise ValidationError(
                "the subject's key is held in a shard of another region and keys never move: "
                "this region change would take its data out of its jurisdiction",
                {"region": "key_held_elsewhere"},
            )
        if is_minor is not None:
            derived = self._dob_minor(subject_id)
            if derived is not None and derived != is_minor:
                raise MinorFlagConflicts(
                    "the stored date of birth says otherwise: correct the date instead",
                    {"is_minor": "conflicts_with_date_of_birth"},
                )
        return self._apply(subject_id, is_minor, region)

    def _apply(
        self, subject_id: str, is_minor: bool | None, region: str | None
    ) -> tuple[Attributes, list[str]]:
        with self.vault.tx.begin() as session:
            subject = self.vault.store.subject(session, subject_id, lock="update")
            self.vault.store.require_active(subject)
            changed = []
            if is_minor is not None and bool(subject.is_minor) != is_minor:
                subject.is_minor = is_minor
                changed.append("is_minor")
            if region is not None and subject.region != region.upper():
                subject.region = region.upper()
                changed.append("region")
            return Attributes(subject.id, bool(subject.is_minor), subject.region), changed

    def come_of_age(self) -> list[str]:
        """Minors whose stored date of birth says they are adults now (the age-out task)."""
        with self.vault.tx.begin(read_only=True) as session:
            ids = session.scalars(
                select(Subject.id)
                .join(FieldValue, FieldValue.subject_id == Subject.id)
                .where(
                    Subject.is_minor.is_(True),
                    Subject.status == STATUS_ACTIVE,
                    FieldValue.field == DATE_OF_BIRTH,
                )
            ).all()
        return [sid for sid in ids if self._dob_minor(sid) is False]

    def age_out(self, subject_id: str) -> bool:
        """Clear the minor flag of one subject come of age; False if nothing changed (no
        stored date of birth, or one that still says minor)."""
        if self._dob_minor(subject_id) is not False:
            return False
        return bool(self._apply(subject_id, False, None)[1])
