"""Cross-border transfers (policy §7: "transfers outside your jurisdiction comply with
applicable laws"): a principal in another region than the subject reads or writes the
subject's data only under a transfer basis in force for (subject, purpose, destination)
(``access/transfers.py``); a ``separate_consent`` basis also needs the subject's consent
``cross_border:<destination>``. An allowed transfer carries a note (from, to, basis,
reference) into the audit event: the log is the record of every transfer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.consents import Consents
from access.purposes import CROSS_BORDER, Purpose
from access.transfers import TransferBases

# Erasing data, and recording a consent, a restriction or a corrected minor status or
# region, send none of the subject's personal data anywhere: they are how the subject's
# rights are carried out, wherever the privacy office sits.
EXEMPT_ACTIONS = frozenset(
    {"shred", "consent_write", "restrict", "attributes", "break_glass", "hold"}
)


class TransferCondition:
    name = "transfer"

    def __init__(
        self, bases: TransferBases, consents: Consents, *, home: str, subject_default: str
    ) -> None:
        self.bases = bases
        self.consents = consents
        self.home = home.upper()  # where principals with no region of their own are
        self.subject_default = subject_default.upper()

    def applies(self, action: str, purpose: Purpose) -> bool:
        return action not in EXEMPT_ACTIONS

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        destination = (ask.region or self.home).upper()
        crossing = [
            i
            for i, it in enumerate(items)
            if (it.subject.region or self.subject_default).upper() != destination
        ]
        if not crossing:
            return {}
        subjects = list({items[i].subject.subject_id: items[i].subject for i in crossing}.values())
        bases = self.bases.covering(
            [s.subject_id for s in subjects], ask.purpose.name, destination, session
        )
        by_consent = [
            s for s in subjects if (b := bases.get(s.subject_id)) and b.basis == "separate_consent"
        ]
        consented = (
            self.consents.in_force_for(by_consent, f"{CROSS_BORDER}{destination}", session)
            if by_consent
            else set()
        )
        out: dict[int, Finding] = {}
        for i in crossing:
            subject = items[i].subject
            basis = bases.get(subject.subject_id)
            if basis is None or (
                basis.basis == "separate_consent" and subject.subject_id not in consented
            ):
                out[i] = Finding("transfer_basis_required")
                continue
            out[i] = Finding(
                note={
                    "from": (subject.region or self.subject_default).upper(),
                    "to": destination,
                    "basis": basis.basis,
                    "reference": basis.reference,
                }
            )
        return out

    def describe(self, action: str, purpose: Purpose) -> str:
        if not self.applies(action, purpose):
            return f"cross-border: {action} transfers nothing"
        return (
            "a subject of another region than the principal's needs a transfer basis in force "
            f"for {purpose.name} to the principal's region (separate_consent: also the "
            "subject's consent cross_border:<region>): transfer_basis_required, policy §7; "
            "an allowed one is audited as a transfer"
        )
