"""Recipients (policy §3(1): "we may share data with third-party vendors (payment
processors, logistics, suppliers), authorities, affiliates"): a principal that is not
internal is a named recipient; a processor receives nothing without a processing
agreement on record (``no_processing_agreement``); every item a recipient is let see
names it in the audit outcome, so a subject's export can list who received their data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.purposes import Purpose

KINDS = ("internal", "processor", "controller", "affiliate", "authority")


class RecipientCondition:
    name = "recipient"

    def applies(self, action: str, purpose: Purpose) -> bool:
        return True

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        recipient = ask.recipient
        if recipient is None or recipient.internal:
            return {}
        if recipient.kind == "processor" and not recipient.agreement:
            return {i: Finding("no_processing_agreement") for i in range(len(items))}
        note = {k: v for k, v in recipient.as_dict().items() if v}
        return {i: Finding(note=note) for i in range(len(items))}

    def describe(self, action: str, purpose: Purpose) -> str:
        return (
            "a processor needs a processing agreement on record (no_processing_agreement); "
            "what any recipient sees is audited under its name"
        )
