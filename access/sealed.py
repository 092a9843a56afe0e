"""Rows the database keeps but must not be trusted on (consents, restrictions, transfer
bases): each carries a MAC under the grant key over its content and its id, so a row
inserted or edited with SQL fails its tag. What a failing row means is each table's to
say, always the cautious reading (a consent not in force, a restriction in force, a
basis covering nothing). Deleting a row is not shown by row tags: see ARCHITECTURE's
threat model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from access.grants import GrantSeal, TagMismatch


def moment(value: dt.datetime | None) -> str:
    """A timestamp as tagged: aware UTC, microseconds (SQLite hands back naive values)."""
    if value is None:
        return ""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="microseconds")


class RowSeal:
    def __init__(self, seal: GrantSeal, kind: str) -> None:
        self.seal = seal
        self.kind = kind

    def tag(self, material: Sequence[Any]) -> str:
        return self.seal.mac(self.kind, list(material))

    def valid(self, material: Sequence[Any], tag: str | None) -> bool:
        try:
            self.seal.check(self.kind, list(material), tag)
        except TagMismatch:
            return False
        return True
