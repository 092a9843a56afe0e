"""``pii-vault breach-scope`` (issue 20, §4 incident response): what did principal P see
between T1 and T2? Read from the audit log (every allowed item names its subject and
field), then each subject's region and minor flag from its row: subject ids, fields and
counts, never a value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from vault.models import Subject

READS = frozenset({"detokenize", "read_masked", "reveal", "export", "disclose", "match"})


def _allowed_items(event: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(subject id, field, redaction) of every item the event let through."""
    outcome = event.get("outcome") or {}
    subjects = event.get("subject_ids") or []
    for key, item in outcome.items():
        if not isinstance(item, Mapping):
            continue
        if key.isdigit():  # a batch item
            for field, decision in (item.get("fields") or {}).items():
                if isinstance(decision, Mapping) and decision.get("redaction") in (
                    "plain",
                    "masked",
                ):
                    yield str(item.get("subject_id")), field, str(decision["redaction"])
        elif item.get("redaction") in ("plain", "masked") and subjects:
            yield str(subjects[0]), key, str(item["redaction"])


def scope(events: Iterable[Mapping[str, Any]], engine: Engine) -> dict[str, Any]:
    plain: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    subjects: set[str] = set()
    considered = 0
    for event in events:
        if event.get("action") not in READS or event.get("decision") not in ("allow", "partial"):
            continue
        considered += 1
        for sid, field, redaction in _allowed_items(event):
            subjects.add(sid)
            (plain if redaction == "plain" else masked)[field] += 1
    regions: Counter[str] = Counter()
    minors: list[str] = []
    ids = sorted(subjects)
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in conn.execute(
                select(Subject.id, Subject.region, Subject.is_minor).where(Subject.id.in_(chunk))
            ):
                regions[row.region or "?"] += 1
                if row.is_minor:
                    minors.append(row.id)
    return {
        "events": considered,
        "subjects": ids,
        "subject_count": len(ids),
        "fields_plain": dict(sorted(plain.items())),
        "fields_masked": dict(sorted(masked.items())),
        "regions": dict(sorted(regions.items())),
        "minors": sorted(minors),
    }
