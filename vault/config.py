"""Settings from the environment (DESIGN.md, CLI section). Bad values fail at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys.cluster import parse_addrs
from keys.errors import KeyProviderConfigError
from keys.factory import PROVIDERS, KeyProviderSettings
from keys.sharding import parse_open, parse_region, parse_shards
from keys.vault_auth import read_secret_file
from vault.errors import ConfigError
from vault.regions import known_region

DEFAULT_MAX_DEK_ENCRYPTIONS = 1 << 20  # far below the 2**32 random-nonce bound for AES-GCM


def _int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds")
    return value


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"{name}: no such file {raw}")
    return path


def _region(env: Mapping[str, str], name: str, default: str) -> str:
    region = env.get(name) or default
    if not re.fullmatch(r"[A-Za-z0-9-]{2,16}", region) or not known_region(region):
        raise ConfigError(
            f"{name} must be an ISO 3166 country (DE) or subdivision (US-CA) code, "
            f"not {region[:16]!r}"
        )
    return region


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """One of ``allowed``, given in any case; returned as ``allowed`` spells it."""
    spelled = {a.lower(): a for a in allowed}
    value = (env.get(name) or default).strip().lower()
    if value not in spelled:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}")
    return spelled[value]


def _vault_name(env: Mapping[str, str], name: str, default: str) -> str:
    """A mount or policy name: it is written into the service policy's paths."""
    value = (env.get(name) or default).strip().strip("/")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", value):
        raise ConfigError(f"{name} must be a name of letters, digits, '-' and '_'")
    return value


MAX_BATCH_LIMIT = 500  # the API's own bound (the OpenAPI document says it)


def _bounded(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _int(env, name, default, low)
    if value > high:
        raise ConfigError(f"{name} must be at most {high}")
    return value


def secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME``, or the contents of the file ``NAME_FILE`` (so a secret need not sit in
    the environment of every process); both set is refused as ambiguous."""
    value, path = env.get(name) or "", env.get(f"{name}_FILE") or ""
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if not path:
        return value or None
    try:
        return read_secret_file(path, f"{name}_FILE")
    except KeyProviderConfigError as exc:
        raise ConfigError(str(exc)) from exc


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"https?://[^\s]+", raw):
        raise ConfigError(f"{name} must be an http(s) URL")
    return raw


def _service_oidc(env: Mapping[str, str]) -> dict[str, Any]:
    """An issuer needs an audience (a token for another relying party must not pass)."""
    issuer = _url(env, "PII_VAULT_SERVICE_OIDC_ISSUER")
    audience = (env.get("PII_VAULT_SERVICE_OIDC_AUDIENCE") or "").strip() or None
    claim = (env.get("PII_VAULT_SERVICE_OIDC_CLAIM") or "").strip() or "pii_vault_principal"
    if issuer is None and audience is not None:
        raise ConfigError("PII_VAULT_SERVICE_OIDC_AUDIENCE needs PII_VAULT_SERVICE_OIDC_ISSUER")
    if issuer is not None and audience is None:
        raise ConfigError("PII_VAULT_SERVICE_OIDC_ISSUER needs PII_VAULT_SERVICE_OIDC_AUDIENCE")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", claim):
        raise ConfigError("PII_VAULT_SERVICE_OIDC_CLAIM must be a claim name")
    return {
        "service_oidc_issuer": issuer.rstrip("/") if issuer else None,
        "service_oidc_audience": audience,
        "service_oidc_claim": claim,
    }


def _audit_sinks(env: Mapping[str, str]) -> dict[str, Any]:
    syslog = (env.get("PII_VAULT_AUDIT_SYSLOG") or "").strip() or None
    if syslog is not None and not re.fullmatch(r"(tcp|udp)://[^\s/:]+:\d{1,5}", syslog):
        raise ConfigError("PII_VAULT_AUDIT_SYSLOG must be tcp://HOST:PORT or udp://HOST:PORT")
    url = _url(env, "PII_VAULT_AUDIT_HTTP_URL")
    key = secret(env, "PII_VAULT_AUDIT_HTTP_SECRET")
    if url is not None and not key:
        raise ConfigError("PII_VAULT_AUDIT_HTTP_URL needs PII_VAULT_AUDIT_HTTP_SECRET(_FILE)")
    return {"audit_syslog": syslog, "audit_http_url": url, "audit_http_secret": key}


ReadBudget = tuple[int, int]  # plaintext fields per minute, per day


def _read_pair(name: str, text: str) -> ReadBudget:
    minute, _, day = text.strip().partition("/")
    try:
        m, d = int(minute), int(day)
    except ValueError:
        m, d = 0, 0
    if m < 1 or d < m:
        raise ConfigError(f"{name}: a read budget is MINUTE/DAY with 1 <= MINUTE <= DAY")
    return m, d


def _read_budgets(env: Mapping[str, str]) -> tuple[ReadBudget, dict[str, ReadBudget]]:
    """``PII_VAULT_READ_BUDGET`` (MINUTE/DAY, default 6000/200000) and
    ``PII_VAULT_READ_BUDGET_ROLES`` (role=MINUTE/DAY,...)."""
    raw = env.get("PII_VAULT_READ_BUDGET")
    default = _read_pair("PII_VAULT_READ_BUDGET", raw) if raw else (6000, 200_000)
    roles: dict[str, ReadBudget] = {}
    for part in (p.strip() for p in (env.get("PII_VAULT_READ_BUDGET_ROLES") or "").split(",")):
        if part:
            role, sep, limits = part.partition("=")
            if not sep or not role.strip():
                raise ConfigError("PII_VAULT_READ_BUDGET_ROLES is role=MINUTE/DAY,...")
            roles[role.strip()] = _read_pair("PII_VAULT_READ_BUDGET_ROLES", limits)
    return default, roles


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".pii-vault")
    database_url: str = field(default="", repr=False)  # may hold a password
    keys: KeyProviderSettings = field(default_factory=KeyProviderSettings)
    dek_cache_size: int = 1024
    dek_cache_ttl: float = 300.0
    # A shred reaches every worker's cache within this bound, whatever the database says.
    shred_recheck: float = 10.0
    max_dek_encryptions: int = DEFAULT_MAX_DEK_ENCRYPTIONS
    default_region: str = "CN"
    # Where this deployment (and a principal with no region of its own) is (policy §7).
    deployment_region: str = "CN"
    maintenance_interval: float = 30.0
    audit_anchor_every: int = 500
    audit_anchor_seconds: float = 10.0
    lookup_failure_budget: int = 1000
    lookup_failure_window: int = 60
    db_timeout: float = 5.0
    orphan_grace: float = 600.0
    max_batch: int = 500
    # Subject keys made ahead per region for batches of new subjects (vault/key_pool).
    key_pool: int = 500
    worker_timeout: int = 60
    worker_threads: int = 4
    # /metrics answers only with this bearer token when it is set.
    metrics_token: str | None = field(default=None, repr=False)
    # People's budgets (access/usage.py) and the ticket system's hook (access/tickets.py).
    reveal_budget: int = 50
    search_budget: int = 10
    ticket_url: str | None = None
    # The audit stream (access/audit_stream.py): sinks every committed event goes to.
    audit_syslog: str | None = None
    audit_http_url: str | None = None
    audit_http_secret: str | None = field(default=None, repr=False)
    # Service sign-in with OIDC (access/service_tokens.py): off unless an issuer is set.
    service_oidc_issuer: str | None = None
    service_oidc_audience: str | None = None
    service_oidc_claim: str = "pii_vault_principal"
    ticket_token: str | None = field(default=None, repr=False)
    # Slow clients (api/edge.py): a request must arrive whole within this; so many may be
    # mid-request per worker at once.
    request_read_timeout: float = 10.0
    max_reading_connections: int = 256
    # PII_VAULT_SCHEMA_FILE / PII_VAULT_PURPOSES_FILE: a company's own fields and purposes
    # instead of the shipped vault/fields.toml and access/purposes.toml (issue 23).
    schema_file: Path | None = None
    purposes_file: Path | None = None
    # PII_VAULT_LOG_FORMAT (text|json) and PII_VAULT_LOG_LEVEL (api/logs.py).
    log_format: str = "text"
    log_level: str = "INFO"
    # Policy §6: minors by their date of birth; guardians consent for children.
    age_of_majority: int = 18
    child_age: int = 14
    # Policy §5: a deactivated account is shredded this many days later unless reactivated.
    deactivation_grace_days: int = 30
    # Longest a disclosure may be withheld from the subject (issue 20, §2(2)).
    disclosure_max_withhold_days: int = 180
    # Longest break-glass grant, minutes (issue 20, §2(2)); the alert hook's address.
    break_glass_minutes: int = 60
    alert_url: str | None = None
    # Plaintext fields per principal per minute/day, by role (issue 20; access/usage.py).
    read_budget: ReadBudget = (6000, 200_000)
    # How long the consent ledger keeps a shredded subject's consents (limitation period).
    consent_ledger_days: int = 3 * 365
    read_budget_roles: Mapping[str, ReadBudget] = field(default_factory=dict)
    # Four-eyes (issue 20; access/approvals.py): <category or field>:<purpose>,... or none;
    # an approval is usable this many minutes; an undecided request expires after hours.
    four_eyes: str = "identity:customer_support,financial:customer_support"
    approval_window_minutes: int = 15
    approval_pending_hours: int = 24
    # Condition alerts (access/watch.py): repeat interval, bulk exports per principal per
    # hour (0: off), unanchored audit events.
    alert_repeat_seconds: float = 3600.0
    bulk_export_alert: int = 20
    anchor_backlog_alert: int = 5000

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'vault.db').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("PII_VAULT_HOME") or ".pii-vault")
        kind = (env.get("PII_VAULT_KEY_PROVIDER") or "local").strip().lower()
        if kind not in PROVIDERS:
            raise ConfigError(
                f"PII_VAULT_KEY_PROVIDER must be one of {', '.join(PROVIDERS)}, not {kind!r}"
            )
        transit_mount = _vault_name(env, "PII_VAULT_TRANSIT_MOUNT", "transit")
        anchor_mount = _vault_name(env, "PII_VAULT_ANCHOR_MOUNT", "pii-audit-anchors")
        policy_name = _vault_name(env, "PII_VAULT_VAULT_POLICY", "pii-vault")
        if anchor_mount == transit_mount:
            raise ConfigError("PII_VAULT_ANCHOR_MOUNT must differ from PII_VAULT_TRANSIT_MOUNT")
        try:
            shards = parse_shards(env.get("PII_VAULT_KEY_SHARDS") or "", env, transit_mount)
            open_shards = parse_open(env.get("PII_VAULT_KEY_SHARDS_OPEN"), shards)
            primary_region = parse_region(env, 0) if shards else None
        except KeyProviderConfigError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            addrs = parse_addrs(env.get("PII_VAULT_VAULT_ADDRS") or "")
            if env.get("VAULT_ADDR") and not addrs:
                parse_addrs(env["VAULT_ADDR"])
                if "," in env["VAULT_ADDR"]:
                    raise KeyProviderConfigError(
                        "VAULT_ADDR takes one address: list several in PII_VAULT_VAULT_ADDRS"
                    )
        except KeyProviderConfigError as exc:
            raise ConfigError(str(exc)) from exc
        region = _region(env, "PII_VAULT_DEFAULT_REGION", "CN")
        read_budget, read_budget_roles = _read_budgets(env)
        deployment = _region(env, "PII_VAULT_DEPLOYMENT_REGION", region)
        unknown = [s.region for s in shards if s.region and not known_region(s.region)]
        if primary_region and not known_region(primary_region):
            unknown.append(primary_region)
        if unknown:
            raise ConfigError(f"unknown region code(s) bound to shards: {', '.join(unknown)}")
        return cls(
            home=home,
            database_url=env.get("PII_VAULT_DATABASE_URL", ""),
            keys=KeyProviderSettings(
                kind=kind,
                home=home,
                vault_addr=env.get("VAULT_ADDR"),
                vault_addrs=addrs,
                timeout=_seconds(env, "PII_VAULT_VAULT_TIMEOUT", 5.0, 0.1, 120),
                connect_timeout=_seconds(env, "PII_VAULT_VAULT_CONNECT_TIMEOUT", 1.0, 0.05, 30),
                vault_token=secret(env, "VAULT_TOKEN"),
                transit_mount=transit_mount,
                anchor_mount=anchor_mount,
                policy_name=policy_name,
                local_master_key=env.get("PII_VAULT_LOCAL_MASTER_KEY"),
                role_id=env.get("VAULT_ROLE_ID") or None,
                secret_id=env.get("VAULT_SECRET_ID") or None,
                role_id_file=env.get("VAULT_ROLE_ID_FILE") or None,
                secret_id_file=env.get("VAULT_SECRET_ID_FILE") or None,
                approle_mount=env.get("PII_VAULT_APPROLE_MOUNT") or "approle",
                shards=shards,
                open_shards=open_shards if shards else (),
                primary_region=primary_region,
            ),
            dek_cache_size=_int(env, "PII_VAULT_DEK_CACHE_SIZE", 1024, 1),
            dek_cache_ttl=float(_int(env, "PII_VAULT_DEK_CACHE_TTL", 300, 1)),
            shred_recheck=float(_int(env, "PII_VAULT_SHRED_RECHECK", 10, 1)),
            max_dek_encryptions=_int(
                env, "PII_VAULT_MAX_DEK_ENCRYPTIONS", DEFAULT_MAX_DEK_ENCRYPTIONS, 1
            ),
            default_region=region.upper(),
            deployment_region=deployment.upper(),
            maintenance_interval=float(_int(env, "PII_VAULT_MAINTENANCE_INTERVAL", 30, 1)),
            audit_anchor_every=_int(env, "PII_VAULT_AUDIT_ANCHOR_EVERY", 500, 1),
            audit_anchor_seconds=float(_int(env, "PII_VAULT_AUDIT_ANCHOR_SECONDS", 10, 1)),
            lookup_failure_budget=_int(env, "PII_VAULT_LOOKUP_FAILURE_BUDGET", 1000, 1),
            lookup_failure_window=_int(env, "PII_VAULT_LOOKUP_FAILURE_WINDOW", 60, 1),
            db_timeout=float(_int(env, "PII_VAULT_DB_TIMEOUT", 5, 1)),
            orphan_grace=float(_int(env, "PII_VAULT_ORPHAN_GRACE", 600, 1)),
            max_batch=_bounded(env, "PII_VAULT_MAX_BATCH", 500, 1, MAX_BATCH_LIMIT),
            key_pool=_bounded(env, "PII_VAULT_KEY_POOL", 500, 0, MAX_BATCH_LIMIT),
            worker_timeout=_int(env, "PII_VAULT_WORKER_TIMEOUT", 60, 5),
            worker_threads=_bounded(env, "PII_VAULT_WORKER_THREADS", 4, 1, 64),
            metrics_token=secret(env, "PII_VAULT_METRICS_TOKEN"),
            schema_file=_file(env, "PII_VAULT_SCHEMA_FILE"),
            purposes_file=_file(env, "PII_VAULT_PURPOSES_FILE"),
            log_format=_choice(env, "PII_VAULT_LOG_FORMAT", LOG_FORMATS, "text"),
            log_level=_choice(env, "PII_VAULT_LOG_LEVEL", LOG_LEVELS, "INFO"),
            reveal_budget=_int(env, "PII_VAULT_REVEAL_BUDGET", 50, 1),
            search_budget=_int(env, "PII_VAULT_SEARCH_BUDGET", 10, 1),
            ticket_url=_url(env, "PII_VAULT_TICKET_URL"),
            **_service_oidc(env),
            **_audit_sinks(env),
            ticket_token=secret(env, "PII_VAULT_TICKET_TOKEN"),
            request_read_timeout=_seconds(env, "PII_VAULT_REQUEST_READ_TIMEOUT", 10.0, 1, 300),
            max_reading_connections=_bounded(
                env, "PII_VAULT_MAX_READING_CONNECTIONS", 256, 8, 100_000
            ),
            age_of_majority=_bounded(env, "PII_VAULT_AGE_OF_MAJORITY", 18, 14, 21),
            child_age=_bounded(env, "PII_VAULT_CHILD_AGE", 14, 1, 18),
            deactivation_grace_days=_bounded(env, "PII_VAULT_DEACTIVATION_GRACE_DAYS", 30, 1, 3650),
            break_glass_minutes=_bounded(env, "PII_VAULT_BREAK_GLASS_MINUTES", 60, 1, 24 * 60),
            alert_url=_url(env, "PII_VAULT_ALERT_URL"),
            read_budget=read_budget,
            consent_ledger_days=_bounded(env, "PII_VAULT_CONSENT_LEDGER_DAYS", 1095, 1, 36500),
            read_budget_roles=read_budget_roles,
            four_eyes=env.get("PII_VAULT_FOUR_EYES")
            or "identity:customer_support,financial:customer_support",
            approval_window_minutes=_bounded(env, "PII_VAULT_APPROVAL_WINDOW_MINUTES", 15, 1, 1440),
            approval_pending_hours=_bounded(env, "PII_VAULT_APPROVAL_PENDING_HOURS", 24, 1, 720),
            alert_repeat_seconds=_seconds(env, "PII_VAULT_ALERT_REPEAT_SECONDS", 3600.0, 10, 86400),
            bulk_export_alert=_bounded(env, "PII_VAULT_BULK_EXPORT_ALERT", 20, 0, 100_000),
            anchor_backlog_alert=_bounded(env, "PII_VAULT_ANCHOR_BACKLOG_ALERT", 5000, 1, 10**9),
            disclosure_max_withhold_days=_bounded(
                env, "PII_VAULT_DISCLOSURE_MAX_WITHHOLD_DAYS", 180, 0, 3650
            ),
        ).checked()

    def request_bound(self) -> float:
        """The longest a request may wait on its dependencies: a few database waits, each
        cut by the watchdog, and a few key-provider calls, each with its own timeout."""
        vault_call = max(1, len(self.keys.addrs)) * self.keys.connect_timeout + self.keys.timeout
        return 3 * (2 * self.db_timeout + 2) + 3 * vault_call

    def checked(self) -> Settings:
        """Refuse settings under which gunicorn would kill a worker still inside its bounds,
        and a child age above the age of majority."""
        if self.child_age > self.age_of_majority:
            raise ConfigError("PII_VAULT_CHILD_AGE must not exceed PII_VAULT_AGE_OF_MAJORITY")
        if self.worker_timeout < self.request_bound():
            raise ConfigError(
                f"PII_VAULT_WORKER_TIMEOUT ({self.worker_timeout} s) must be at least "
                f"{self.request_bound():.0f} s with PII_VAULT_DB_TIMEOUT={self.db_timeout:.0f}"
            )
        if self.orphan_grace < 2 * self.worker_timeout:
            raise ConfigError(
                "PII_VAULT_ORPHAN_GRACE must be at least twice PII_VAULT_WORKER_TIMEOUT "
                "(a key younger than that may belong to a request still running)"
            )
        return self
