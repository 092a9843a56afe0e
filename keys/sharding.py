"""Subject keys spread over several transit mounts or OpenBao clusters (shards), by configuration.

One OpenBao node holds a bounded number of subject keys (README, "Capacity"). A
deployment that outgrows it adds shards: more transit mounts on the same cluster
(spreads the per-mount key cache and policy set) or mounts on other clusters
(spreads memory, storage and CPU). Each subject id names its shard, so routing
needs no table, no lookup and no coordination between workers:

* a subject created while sharding is configured gets a UUID version 8 whose last
  byte is its shard number (114 random bits remain, still unguessable);
* any other id (a version-4 UUID, issued before sharding, or by a backend without
  it) lives on shard 0, the primary: turning sharding on moves nothing.

New subjects go to the *open* shards (``PII_VAULT_KEY_SHARDS_OPEN``, default all), so
a full shard is closed and keeps serving its subjects while new ones land elsewhere;
keys never move (they are not exportable). The primary also holds what is one per
deployment: the blind-index key, the signing key and the audit anchors.

A shard can be bound to a region (``PII_VAULT_SHARD_<N>_REGION``, shard 0 included;
policy §7): a subject of a region with bound shards is keyed only in an open shard
bound to it — never elsewhere, refused with ``RegionUnavailable`` if none is open —
and a subject of any other region only in an open shard bound to no region. The key,
and so every decryption of the subject's data, stays in its jurisdiction's cluster;
a shard that is down fails its subjects closed (the id names it: no fallback).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keys.claims import backend_claims
from keys.cluster import VaultCluster, clusters_of
from keys.errors import KeyProviderConfigError, RegionUnavailable
from keys.provider import AnchorStore, DataKey, IndexKeyAdmin, KeyBackend
from keys.vault_auth import AuthState

MAX_SHARD = 255
SHARDED_VERSION = 8


def shard_of(subject_id: str) -> int:
    """The shard holding ``subject_id``'s key: its last byte for a version-8 id, else 0."""
    try:
        parsed = uuid.UUID(subject_id)
    except (ValueError, TypeError, AttributeError):
        return 0  # not an id the vault issued: the primary answers (it knows no such key)
    return parsed.bytes[15] if parsed.version == SHARDED_VERSION else 0


def subject_id_on(shard: int) -> str:
    """A fresh random subject id that names ``shard``."""
    if not 0 <= shard <= MAX_SHARD:
        raise ValueError("a shard number is 0..255")
    raw = bytearray(uuid.uuid4().bytes)
    raw[6] = (raw[6] & 0x0F) | (SHARDED_VERSION << 4)  # version 8 (RFC 9562, custom)
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC variant
    raw[15] = shard
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass(frozen=True)
class ShardSettings:
    """One extra shard: a transit mount, on the primary's cluster or on another one."""

    number: int
    mount: str
    addr: str | None = None  # None: the primary's cluster (and its credentials)
    token: str | None = None
    token_file: str | None = None
    role_id_file: str | None = None
    secret_id_file: str | None = None
    region: str | None = None  # PII_VAULT_SHARD_<N>_REGION: keys of that region's subjects

    def __repr__(self) -> str:  # never print a token
        return f"ShardSettings({self.number}, mount={self.mount!r}, addr={self.addr!r})"


def parse_region(env: Mapping[str, str], number: int) -> str | None:
    """``PII_VAULT_SHARD_<N>_REGION`` (shard 0: the primary): the region whose subjects'
    keys the shard holds, or None."""
    raw = (env.get(f"PII_VAULT_SHARD_{number}_REGION") or "").strip().upper()
    if not raw:
        return None
    if not raw.replace("-", "").isalnum() or not 2 <= len(raw) <= 16:
        raise KeyProviderConfigError(
            f"PII_VAULT_SHARD_{number}_REGION must be a short region code such as DE"
        )
    return raw


def parse_shards(
    spec: str, env: Mapping[str, str], primary_mount: str
) -> tuple[ShardSettings, ...]:
    """``PII_VAULT_KEY_SHARDS``: ``N=MOUNT`` (another mount on the primary's cluster) or
    ``N=http(s)://HOST:PORT/MOUNT`` (another cluster), comma-separated, N in 1..255.
    Another cluster's credentials: ``PII_VAULT_SHARD_<N>_TOKEN`` or ``..._TOKEN_FILE``, or
    AppRole through ``..._ROLE_ID_FILE`` and ``..._SECRET_ID_FILE``."""
    shards: dict[int, ShardSettings] = {}
    places: set[tuple[str | None, str]] = {(None, primary_mount)}
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        number_text, sep, target = raw.partition("=")
        if not sep or not number_text.strip().isdigit():
            raise KeyProviderConfigError(
                f"PII_VAULT_KEY_SHARDS entry {raw[:80]!r} must look like N=MOUNT or N=URL/MOUNT"
            )
        number = int(number_text)
        if not 1 <= number <= MAX_SHARD or number in shards:
            raise KeyProviderConfigError(
                f"PII_VAULT_KEY_SHARDS: shard {number} is out of 1..255 or given twice"
            )
        target = target.strip()
        addr: str | None = None
        mount = target
        if target.startswith(("http://", "https://")):
            scheme, _, rest = target.partition("://")
            host, _, path = rest.partition("/")
            addr, mount = f"{scheme}://{host}", path.strip("/")
        if not mount or "/" in mount:
            raise KeyProviderConfigError(f"PII_VAULT_KEY_SHARDS: shard {number} names no mount")
        if (addr, mount) in places:
            raise KeyProviderConfigError(
                f"PII_VAULT_KEY_SHARDS: shard {number} uses a mount another shard uses"
            )
        places.add((addr, mount))
        prefix = f"PII_VAULT_SHARD_{number}_"
        shard = ShardSettings(
            number,
            mount,
            addr,
            token=env.get(prefix + "TOKEN") or None,
            token_file=env.get(prefix + "TOKEN_FILE") or None,
            role_id_file=env.get(prefix + "ROLE_ID_FILE") or None,
            secret_id_file=env.get(prefix + "SECRET_ID_FILE") or None,
            region=parse_region(env, number),
        )
        if addr is not None and not (
            shard.token or shard.token_file or (shard.role_id_file and shard.secret_id_file)
        ):
            raise KeyProviderConfigError(
                f"shard {number} is on another cluster: set {prefix}TOKEN(_FILE) or "
                f"{prefix}ROLE_ID_FILE and {prefix}SECRET_ID_FILE"
            )
        shards[number] = shard
    return tuple(shards[n] for n in sorted(shards))


def parse_open(spec: str | None, shards: Sequence[ShardSettings]) -> tuple[int, ...]:
    """``PII_VAULT_KEY_SHARDS_OPEN``: the shards new subjects go to (default: all, 0 too)."""
    known = {0} | {s.number for s in shards}
    if not spec or not spec.strip():
        return tuple(sorted(known))
    chosen: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part.isdigit() or int(part) not in known:
            raise KeyProviderConfigError(
                f"PII_VAULT_KEY_SHARDS_OPEN names {part[:16]!r}, which is not a configured shard"
            )
        chosen.append(int(part))
    return tuple(sorted(set(chosen)))


class ShardedKeys:
    """A KeyBackend over a primary (shard 0) and further shards, each a whole backend.

    Subject-key calls go to the subject's shard; everything that exists once per
    deployment (blind index, signing, anchors) to the primary."""

    def __init__(
        self,
        primary: KeyBackend,
        shards: Mapping[int, KeyBackend],
        open_shards: Sequence[int] = (),
        regions: Mapping[int, str] | None = None,
    ) -> None:
        self.primary = primary
        self.backends: dict[int, KeyBackend] = {0: primary, **dict(shards)}
        self.open_shards = tuple(open_shards) or tuple(sorted(self.backends))
        unknown = [n for n in self.open_shards if n not in self.backends]
        if unknown:
            raise KeyProviderConfigError(f"open shards {unknown} are not configured")
        self.regions = {n: r.upper() for n, r in (regions or {}).items()}
        if any(n not in self.backends for n in self.regions):
            raise KeyProviderConfigError("a region is bound to a shard that is not configured")
        self.name = primary.name

    def region_fits(self, subject_id: str, region: str) -> bool:
        """Whether a subject of ``region`` may have its key where ``subject_id``'s is."""
        shard = shard_of(subject_id)
        if region.upper() in self.regions.values():
            return self.regions.get(shard) == region.upper()
        return shard not in self.regions

    def shards_for(self, region: str | None) -> tuple[int, ...]:
        """The open shards a new subject of ``region`` may be keyed in (none: refused)."""
        wanted = (region or "").upper()
        if wanted and wanted in self.regions.values():
            return tuple(n for n in self.open_shards if self.regions.get(n) == wanted)
        return tuple(n for n in self.open_shards if n not in self.regions)

    def _for(self, subject_id: str) -> KeyBackend:
        backend = self.backends.get(shard_of(subject_id))
        if backend is None:  # an id naming a shard this deployment does not know
            raise KeyProviderConfigError(
                f"subject key on shard {shard_of(subject_id)}, which is not configured"
            )
        return backend

    # -- SubjectIdIssuer ------------------------------------------------------------

    def new_subject_id(self, region: str | None = None) -> str:
        choices = self.shards_for(region)
        if not choices:
            where = f"region {region}" if region else "subjects of no bound region"
            raise RegionUnavailable(
                f"no open key shard for {where}: its keys are kept in its own shards only "
                "(PII_VAULT_SHARD_<N>_REGION, PII_VAULT_KEY_SHARDS_OPEN)"
            )
        shard = random.choice(choices)  # noqa: S311 - spreading load, not secrecy
        return subject_id_on(shard) if shard else str(uuid.uuid4())

    # -- SubjectKeys ------------------------------------------------------------------

    def create_subject_key(self, subject_id: str) -> None:
        self._for(subject_id).create_subject_key(subject_id)

    def subject_key_exists(self, subject_id: str) -> bool:
        return self._for(subject_id).subject_key_exists(subject_id)

    def generate_data_key(self, subject_id: str) -> DataKey:
        return self._for(subject_id).generate_data_key(subject_id)

    def unwrap_data_key(self, subject_id: str, wrapped: str) -> bytes:
        return self._for(subject_id).unwrap_data_key(subject_id, wrapped)

    def rotate_subject_key(self, subject_id: str) -> None:
        self._for(subject_id).rotate_subject_key(subject_id)

    def rewrap_data_keys(self, subject_id: str, wrapped: Sequence[str]) -> list[str]:
        return self._for(subject_id).rewrap_data_keys(subject_id, wrapped)

    def destroy_subject_key(self, subject_id: str) -> None:
        self._for(subject_id).destroy_subject_key(subject_id)

    # -- KeyInventory -----------------------------------------------------------------

    def subject_key_ids(self) -> list[str]:
        """Every shard's subject keys that belong there (a key whose id names another
        shard is not this deployment's: it is left alone, never reported as an orphan)."""
        found: list[str] = []
        for number, backend in sorted(self.backends.items()):
            found += [s for s in backend.subject_key_ids() if shard_of(s) == number]
        return found

    def subject_key_created(self, subject_id: str) -> float | None:
        return self._for(subject_id).subject_key_created(subject_id)

    def subject_key_rotated(self, subject_id: str) -> float | None:
        return self._for(subject_id).subject_key_rotated(subject_id)

    def trim_subject_key(self, subject_id: str) -> None:
        self._for(subject_id).trim_subject_key(subject_id)

    # -- once per deployment: the primary ---------------------------------------------

    def blind_index(self, messages: Sequence[bytes], version: int | None = None) -> list[str]:
        return self.primary.blind_index(messages, version)

    def sign(self, message: bytes) -> bytes:
        return self.primary.sign(message)

    def signing_public_key(self) -> bytes:
        return self.primary.signing_public_key()

    def grant_key(self) -> bytes:
        return self.primary.grant_key()

    def anchor_store(self) -> AnchorStore:
        return self.primary.anchor_store()

    def rotate_index_key(self) -> int:
        return self._index_admin().rotate_index_key()

    def retire_index_keys_before(self, version: int) -> None:
        self._index_admin().retire_index_keys_before(version)

    def _index_admin(self) -> IndexKeyAdmin:
        if not isinstance(self.primary, IndexKeyAdmin):
            raise KeyProviderConfigError("this key provider cannot rotate index keys")
        return self.primary

    # -- lifecycle: every shard -------------------------------------------------------

    def check(self) -> None:
        """Ready only when every shard is: a subject on a dead shard cannot be served."""
        for backend in self.backends.values():
            backend.check()

    def token_is_root(self) -> bool:
        is_root = getattr(self.primary, "token_is_root", None)
        return bool(is_root()) if callable(is_root) else False

    def verify_auth(self) -> None:
        for backend in self.backends.values():
            verify = getattr(backend, "verify_auth", None)
            if callable(verify):
                verify()

    def mount_claims(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for backend in self.backends.values():
            out.update(backend_claims(backend))
        return out

    def clusters(self) -> list[VaultCluster]:
        """Each cluster once (shards on the primary's cluster share its nodes and index)."""
        out: list[VaultCluster] = []
        for backend in self.backends.values():
            out.extend(c for c in clusters_of(backend) if all(c is not o for o in out))
        return out

    def refresh_auth(self) -> None:
        for backend in self.backends.values():
            backend.refresh_auth()

    @property
    def auth_state(self) -> AuthState | None:
        """The first shard whose authentication failed, else the primary's."""
        for backend in self.backends.values():
            state = backend.auth_state
            if state is not None and not state.ok:
                return state
        return self.primary.auth_state

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
