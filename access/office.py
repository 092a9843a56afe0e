"""The privacy office's paths (policy §2(2), §3, §4, §5, §6, §8): consents, attributes,
restrictions, exports, lawful disclosures, legal holds and a subject's history — each
decided and audited before it touches data, through ``GuardBase``'s plumbing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from access.errors import (
    Forbidden,
)
from access.events import Caller, completed, for_subject
from access.guard_base import LEGAL, SUBJECT_ACCESS, GuardBase
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from access.transfers import recipients_of, transfer_notes
from vault.attributes import Attributes
from vault.results import SubjectView


@dataclass(frozen=True)
class PrivacyRecord:
    view: SubjectView
    consents: list[dict[str, Any]]
    restrictions: list[dict[str, Any]]
    history: list[dict[str, Any]]


class OfficeGuard(GuardBase):
    """The privacy office's single-subject paths."""

    def set_consent(
        self,
        caller: Caller,
        subject_id: str,
        consent_purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
        guardian_ref: str | None = None,
        verification: str | None = None,
        channel: str | None = None,
        text_sha256: str | None = None,
    ) -> dict[str, Any]:
        """Record a consent; the writer's permission is checked against the consent's topic.
        A guardian's names the guardian and how they were verified (policy §6); the whole
        consent, evidence included, is audited once recorded (issue 20)."""
        given: dict[str, Any] = {
            "granted": granted,
            "given_by": given_by,
            "policy_version": policy_version,
            "guardian_ref": guardian_ref,
            "verification": verification,
            "channel": channel,
            "text_sha256": text_sha256,
            "recorded_by": caller.principal,
        }
        self.consents.prepare(consent_purpose, **given)  # a malformed consent is a 400 first
        facts = self._facts(caller, subject_id, "consent_write", consent_purpose, [WHOLE_SUBJECT])
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "consent_write", consent_purpose, facts, None
        )
        recorded = self.consents.record(facts.subject_id, consent_purpose, **given)
        self._consent_recorded(caller, facts.subject_id, [recorded])
        return recorded

    def _consent_recorded(
        self, caller: Caller, subject_id: str, consents: Sequence[Mapping[str, Any]]
    ) -> None:
        """The consents as stored (granted, given_by, edition, evidence) into the log."""
        for consent in consents:
            detail = {k: v for k, v in consent.items() if k not in ("subject_id", "recorded_at")}
            self.audit.append(
                completed(
                    caller, "consent_write", str(consent["purpose"]), subject_id, detail, None
                )
            )

    def change_attributes(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        *,
        is_minor: bool | None = None,
        region: str | None = None,
        justification: Justification | None = None,
    ) -> Attributes:
        """The privacy office corrects a subject's minor status or region: decided and
        audited first, the change recorded after (which attributes, never their values)."""
        facts = self._facts(caller, subject_id, "attributes", purpose, [WHOLE_SUBJECT])
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "attributes", purpose, facts, justification
        )
        now, changed = self.attributes.change(facts.subject_id, is_minor=is_minor, region=region)
        self.audit.append(
            completed(
                caller, "attributes", purpose, now.subject_id, {"changed": changed}, justification
            )
        )
        return now

    def restrict(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        scope: str,
        kind: str,
        justification: Justification | None = None,
    ) -> list[dict[str, Any]]:
        """Record a restriction, an objection, or a lift (policy §5): the privacy office,
        decided and audited first; returns the subject's restriction history."""
        restrictions = self.decider.restrictions
        if restrictions is None:
            raise Forbidden("restrictions are not kept here")
        facts = self._facts(caller, subject_id, "restrict", purpose, [WHOLE_SUBJECT])
        self._decide_and_record(caller, [WHOLE_SUBJECT], "restrict", purpose, facts, justification)
        recorded = restrictions.record(facts.subject_id, scope, kind)
        self.audit.append(
            completed(caller, "restrict", purpose, facts.subject_id, recorded, justification)
        )
        return restrictions.of(facts.subject_id)

    def _exportable(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
        action: str = "export",
    ) -> str:
        """The subject's id once an export (or a part of one) is decided and audited. For
        ``legal_compliance`` also a held subject (records a retention floor keeps)."""
        facts = self._facts(
            caller, subject_id, action, purpose, [WHOLE_SUBJECT], held_ok=purpose == LEGAL
        )
        self._decide_and_record(caller, [WHOLE_SUBJECT], action, purpose, facts, justification)
        return facts.subject_id

    def _history(self, subject_id: str, limit: int, *, own: bool) -> list[dict[str, Any]]:
        """The subject's events, each cut down to them. ``own``: for the subject's own
        request, which may not yet learn of a disclosure whose instrument forbids it."""
        hide = own and self.disclosures is not None and self.disclosures.withheld(subject_id)
        return [
            for_subject(event, subject_id)
            for event in self.audit.events(subject_id=subject_id, limit=limit)
            if not (hide and event["action"] == "disclose")
        ]

    def _export_data(self, subject_id: str, *, own: bool, legal: bool = False) -> dict[str, Any]:
        """``legal``: for legal_compliance, with the prior versions a legal floor keeps."""
        data = self.vault.export(subject_id, prior_versions=legal, allow_held=legal)
        data["consents"] = self.consents.of(subject_id)
        if self.decider.restrictions is not None:
            data["restrictions"] = self.decider.restrictions.of(subject_id)
        if self.disclosures is not None:
            data["disclosures"] = self.disclosures.of(subject_id, withheld_too=not own)
        if self.holds is not None and not own:  # a hold is the office's, not the subject's
            data["legal_holds"] = self.holds.of(subject_id)
        history = self._history(subject_id, 1000, own=own)
        data["transfers"] = [
            {
                "ts": event["ts"],
                "principal": event["principal"],
                "action": event["action"],
                "purpose": event["purpose"],
                **note,
            }
            for event in history
            for _, note in transfer_notes(event)
        ]
        data["recipients"] = recipients_of(history)
        data["access_history"] = history
        return data

    def export(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> dict[str, Any]:
        """All of the subject's data, consents, restrictions, disclosures they may be told
        of, transfers and access history (policy §5)."""
        sid = self._exportable(caller, subject_id, purpose, justification)
        data = self._export_data(sid, own=purpose == SUBJECT_ACCESS, legal=purpose == LEGAL)
        if self.watch is not None:
            self.watch.exported(caller.principal, "export")  # bulk exports alert
        return data

    def disclose(
        self,
        caller: Caller,
        subject_id: str,
        *,
        authority: str,
        instrument: str,
        reference: str,
        justification: Justification | None,
        withhold_days: int = 0,
    ) -> dict[str, Any]:
        """Lawful disclosure to an authority (policy §2(2), §3(3)): the export for
        ``legal_compliance``, decided as ``disclose`` with the ticket and reason, audited
        before it is read and recorded (authority, instrument, reference) before it leaves."""
        if self.disclosures is None:
            raise Forbidden("disclosures are not kept here")
        self.disclosures.check(authority, instrument, reference, withhold_days)
        sid = self._exportable(caller, subject_id, LEGAL, justification, action="disclose")
        assert justification is not None  # the purpose demands one: decided above
        data = self._export_data(sid, own=False, legal=True)
        record = self.disclosures.record(
            sid,
            authority=authority,
            instrument=instrument,
            reference=reference,
            ticket=justification.ticket,
            withhold_days=withhold_days,
            actor=caller.principal,
        )
        detail = {k: record[k] for k in ("authority", "instrument", "reference", "withheld_until")}
        self.audit.append(completed(caller, "disclose", LEGAL, sid, detail, justification))
        data["disclosure"] = record
        if self.watch is not None:
            self.watch.exported(caller.principal, "disclose")
        return data

    def privacy_record(self, caller: Caller, subject_id: str, purpose: str) -> PrivacyRecord:
        """The privacy office's page of a subject: masked values, consents, restrictions and
        access history under one decision and one audit event (issue 23: a view wrote three
        before anything was downloaded). Decided as an export, of which each part is one."""
        sid = self._exportable(caller, subject_id, purpose)
        restrictions = self.decider.restrictions
        return PrivacyRecord(
            view=self.vault.masked_view(sid),
            consents=self.consents.of(sid),
            restrictions=restrictions.of(sid) if restrictions is not None else [],
            history=self._history(sid, 200, own=purpose == SUBJECT_ACCESS),
        )

    def hold(
        self,
        caller: Caller,
        subject_id: str,
        *,
        held: bool,
        reference: str,
        justification: Justification | None,
    ) -> list[dict[str, Any]]:
        """Place or lift a legal hold (policy §4): the privacy office, ``legal_compliance``
        with its ticket and reason, decided and audited first; returns the hold history."""
        if self.holds is None:
            raise Forbidden("legal holds are not kept here")
        facts = self._facts(caller, subject_id, "hold", LEGAL, [WHOLE_SUBJECT])
        self._decide_and_record(caller, [WHOLE_SUBJECT], "hold", LEGAL, facts, justification)
        recorded = self.holds.record(
            facts.subject_id, held=held, reference=reference, actor=caller.principal
        )
        self.audit.append(
            completed(caller, "hold", LEGAL, facts.subject_id, recorded, justification)
        )
        return self.holds.of(facts.subject_id)
