"""``pii-vault import FILE``: onboard people in bulk (issue 21). One JSON object per line,
the shape of a ``POST /v1/subjects`` body without ``purpose`` (``external_id``, ``region``,
``is_minor``, ``fields``; binary fields base64). Each batch of ``PII_VAULT_MAX_BATCH``
lines goes through the guard's tokenize path — decided for ``--purpose`` as ``--principal``
and audited before anything is stored, exactly as the API's batch — and every subject
it created is named in a completion event. Idempotent by ``external_id``: a re-run after
a crash finds what the first run stored (``already present``: not sent again, not
touched) and creates the rest.

The summary counts created, already present and refused lines; a refused line is listed
with its number and reason code, never a value. Exit 1 if any line was refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from tqdm import tqdm

from access.batch import TokenizeItem, Undecodable
from access.events import Caller, batch
from access.runtime import Runtime
from api.cli.base import EXIT_ERROR, _one_line_errors, _runtime
from api.routes import fields_in
from vault.config import Settings
from vault.errors import ValidationError
from vault.results import TokenizeRecord

KEYS = frozenset({"external_id", "region", "is_minor", "fields"})


@dataclass
class Summary:
    created: int = 0
    present: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"created {self.created}, already present {self.present}, refused {len(self.refused)}"
        ]
        out += [f"  line {n}: {code}" for n, code in sorted(self.refused)]
        return out


def _record(line: str, runtime: Runtime) -> TokenizeItem | str:
    """A line as a tokenize item, or the reason code it is refused with (never a value)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return "invalid_json"
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict):
        return "invalid"
    if set(raw) - KEYS or not isinstance(raw.get("external_id"), str):
        return "invalid"  # an external id is what makes a re-run idempotent
    try:
        values = fields_in(raw["fields"], runtime.vault.schema)
    except ValidationError as exc:
        return Undecodable(exc.errors)
    return TokenizeRecord(
        fields=values,
        external_id=raw["external_id"],
        region=raw.get("region"),
        is_minor=raw.get("is_minor"),
    )


def _batches(stream: IO[str], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for number, line in enumerate(stream, start=1):
        if line.strip():
            chunk.append((number, line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _marking_last(
    chunks: Iterator[list[tuple[int, str]]],
) -> Iterator[tuple[list[tuple[int, str]], bool]]:
    """Each chunk with whether it is the last (one read ahead)."""
    current = next(chunks, None)
    while current is not None:
        following = next(chunks, None)
        yield current, following is None
        current = following


def run_import(
    runtime: Runtime, stream: IO[str], caller: Caller, purpose: str, size: int, bar: Any
) -> Summary:
    summary = Summary()
    for chunk, last in _marking_last(_batches(stream, size)):
        # The key pool makes the next batch's keys while this one is written; not
        # after the last (they would only be destroyed again at the end).
        runtime.vault.key_pool.ahead = not last
        items: list[TokenizeItem] = []
        numbers: list[int] = []
        parsed = [(number, _record(line, runtime)) for number, line in chunk]
        known = runtime.vault.describe_external(
            [i.external_id for _, i in parsed if isinstance(i, TokenizeRecord) and i.external_id]
        )
        for number, item in parsed:
            if isinstance(item, str):
                summary.refused.append((number, item))
            elif isinstance(item, TokenizeRecord) and item.external_id in known:
                summary.present += 1  # stored by an earlier run: not sent, not touched
            else:
                items.append(item)
                numbers.append(number)
        if items:
            results = runtime.guard.tokenize(caller, purpose, items)
            created: list[str] = []
            for number, result in zip(numbers, results, strict=True):
                if result.error is not None:
                    summary.refused.append((number, result.error))
                else:
                    summary.created += 1
                    if result.subject_id is not None:
                        created.append(result.subject_id)
            if created:
                runtime.audit.append(
                    batch(
                        caller,
                        "write",
                        purpose,
                        verdict="completed",
                        subject_ids=created,
                        fields=[],
                        items={"*": {"import": "created", "count": len(created)}},
                        justification=None,
                    )
                )
        bar.update(len(chunk))
    return summary


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--purpose", default="account_registration", show_default=True, help="decided per batch"
)
@click.option(
    "--principal",
    default="svc:registration",
    show_default=True,
    help="whose grants decide the import (an existing, enabled principal)",
)
@_one_line_errors
def import_subjects(file: Path, purpose: str, principal: str) -> None:
    """Create subjects from FILE (one JSON object per line), idempotent by external_id."""
    settings = Settings.from_env()
    with _runtime(settings) as runtime:
        if not runtime.principals.is_enabled(principal):
            raise click.UsageError(f"--principal {principal[:128]} is not an enabled principal")
        runtime.decider.purposes.get(purpose)  # an unknown purpose: an error before any line
        total = sum(1 for line in file.open(encoding="utf-8") if line.strip())
        caller = Caller(principal, "import")
        with (
            file.open(encoding="utf-8") as stream,
            tqdm(total=total, unit="subject", disable=not sys.stderr.isatty()) as bar,
        ):
            summary = run_import(runtime, stream, caller, purpose, settings.max_batch, bar)
    for line in summary.lines():
        click.echo(line)
    if summary.refused:
        sys.exit(EXIT_ERROR)
