"""The vault's domain API: subjects, encrypted fields, tokens, lookup and export.

One class joined from three modules (issue 22 split the one file of 760 lines):
``vault/service_core.py`` (the engine, keys, storage and the keyed transaction),
``vault/writes.py`` (every write in one transaction, nothing half-stored) and
``vault/reads.py`` (every read under the subject's active check). Storage details live
in ``storage``, the data-key lifecycle in ``datakeys``, shredding in ``shredding``,
retention in ``retention``.
"""

from __future__ import annotations

from vault.reads import SubjectReads
from vault.writes import SubjectWrites


class VaultService(SubjectWrites, SubjectReads):
    """Thread-safe; one instance per process."""


__all__ = ["VaultService"]
