"""Transactions and the translation of key-provider and database errors into ``vault.errors``.

Every vault module opens its transactions here, so "which third-party error
means what to a caller" is decided in one place.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    RegionUnavailable,
    UnwrapFailed,
)
from vault.db import READ_ONLY
from vault.errors import (
    DatabaseUnavailable,
    DecryptionError,
    KeyProviderUnavailable,
    RegionKeysUnavailable,
    SubjectShredded,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def translating() -> Iterator[None]:
    """Key-provider and database errors as vault errors. IntegrityError passes (callers decide)."""
    try:
        yield
    except KeyUnavailable as exc:
        raise KeyProviderUnavailable(str(exc)) from exc
    except RegionUnavailable as exc:
        raise RegionKeysUnavailable(str(exc)) from exc
    except KeyDestroyed as exc:
        raise SubjectShredded("subject key destroyed: the subject is shredded") from exc
    except UnwrapFailed as exc:
        raise DecryptionError() from exc
    except KeyProviderConfigError as exc:
        raise KeyProviderUnavailable(f"key provider misconfigured: {exc}") from exc
    except KeyProviderError as exc:
        raise KeyProviderUnavailable(f"key provider error: {exc}") from exc
    except IntegrityError:
        raise
    except DBAPIError as exc:
        raise DatabaseUnavailable("database unavailable") from exc


class Transactions:
    """Sessions over one engine, each in a translated transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def compact(self) -> None:
        """SQLite: checkpoint and truncate the WAL, so deleted rows' old page images are gone
        from the files (``secure_delete`` has zeroed them in the database itself). PostgreSQL
        keeps dead tuples until VACUUM; see the README's threat model."""
        if self.engine.dialect.name != "sqlite":
            return
        raw = self.engine.raw_connection()  # outside any transaction (a checkpoint needs that)
        try:
            cursor = raw.cursor()
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        except sqlite3.Error as exc:
            raise DatabaseUnavailable("database unavailable: WAL checkpoint failed") from exc
        finally:
            raw.close()
        if busy is not None and busy[0]:
            log.warning("WAL checkpoint after a shred was blocked by readers; it completes later")

    @contextlib.contextmanager
    def reading(self, session: Session | None = None) -> Iterator[Session]:
        """``session`` if the caller has one open (one snapshot for several reads of a
        request), else a read-only transaction of its own."""
        if session is not None:
            with translating():
                yield session
            return
        with self.begin(read_only=True) as own:
            yield own

    @contextlib.contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Session]:
        with translating(), self._sessions.begin() as session:
            if read_only:
                session.connection(execution_options=READ_ONLY)
            yield session
