"""Compose the running system once: key backend, vault, shredder, access stores, audit, guard.

The CLI, the HTTP app, the demo and the tests all build their runtime here, so
the wiring (which store the decider reads, what a shred also deletes, which
signer signs) exists once.

Past 400 lines (about 425): ``compose`` wires every part in one function on purpose —
the order in which stores, conditions and the guard are built is the wiring, and split
over modules it would be read in pieces.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from access.alerts import AlertSink, HttpAlerts, NoAlerts
from access.approval_desk import ApprovalDesk
from access.approvals import (
    DEFAULT_PENDING_HOURS,
    DEFAULT_RULES,
    DEFAULT_WINDOW_MINUTES,
    Approvals,
    parse_rules,
)
from access.audit import AuditLog
from access.audit_stream import AuditStreamer, Sink, build_sinks
from access.break_glass import BreakGlass
from access.budget import DEFAULT_LIMIT, DEFAULT_WINDOW, LookupBudget
from access.conditions import Condition
from access.conditions.approval import ApprovalCondition
from access.conditions.consent import ConsentCondition
from access.conditions.emergency import EmergencyCondition
from access.conditions.minors import GuardianCondition
from access.conditions.recipient import RecipientCondition
from access.conditions.restriction import RestrictionCondition
from access.conditions.sensitive import SensitiveCondition
from access.conditions.transfer import TransferCondition
from access.consents import DEFAULT_POLICY_VERSION, Consents
from access.decisions import Decider
from access.disclosures import Disclosures
from access.errors import AccessConfigError
from access.events import Caller, batch, grant_change, operator
from access.grant_state import GrantLedger
from access.grants import GrantSeal
from access.guard import GuardedVault
from access.holds import LegalHolds
from access.log_identity import database_log_id, pin, settle_log_id
from access.policy_store import PolicyStore
from access.principals import Principals
from access.purposes import Purposes
from access.restrictions import Restrictions
from access.sealed import RowSeal
from access.service_tokens import ServiceTokens
from access.tickets import HttpTickets, TicketCheck
from access.transfer_desk import TransferDesk
from access.transfers import TransferBases
from access.usage import (
    DEFAULT_REVEALS_PER_DAY,
    DEFAULT_SEARCHES_PER_MINUTE,
    ReadLimits,
    UsageBudgets,
)
from access.watch import (
    DEFAULT_ANCHOR_BACKLOG,
    DEFAULT_BULK_EXPORTS,
    DEFAULT_REPEAT_SECONDS,
    Watch,
)
from keys.claims import verify_ours
from keys.cluster import clusters_of
from keys.counting import CallCounter
from keys.errors import KeyProviderConfigError, KeyUnavailable
from keys.factory import build_key_provider
from keys.provider import KeyBackend, PublishedRecords
from vault.cache import DataKeyCache
from vault.config import DEFAULT_MAX_DEK_ENCRYPTIONS, Settings
from vault.db import make_engine, private_directory, require_schema, schema_state
from vault.db import migrate as run_migrations
from vault.errors import ConfigError, KeyProviderUnavailable, ServiceUnavailable
from vault.floors import Floors
from vault.maintenance import Maintenance
from vault.minors import Majority
from vault.reconcile import Reconciler
from vault.retention import purge_expired
from vault.schema import Schema
from vault.service import VaultService
from vault.shred_ledger import ShredLedger
from vault.shredding import Shredder
from vault.transactions import translating

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    vault: VaultService
    shredder: Shredder
    policy: PolicyStore
    principals: Principals
    consents: Consents
    transfers: TransferBases
    transfer_desk: TransferDesk
    decider: Decider
    audit: AuditLog
    guard: GuardedVault
    budget: LookupBudget
    usage: UsageBudgets
    backend: KeyBackend
    key_calls: CallCounter
    maintenance: Maintenance
    holds: LegalHolds
    floors: Floors
    orphan_grace: float = 600.0
    stream: AuditStreamer | None = None

    def check_database(self) -> None:
        self.vault.check_database()

    def check_key_provider(self) -> None:
        with translating():
            self.backend.check()

    def schema_state(self) -> str:
        """ok, ahead (a newer version migrated it), behind or missing (vault/db.py)."""
        return schema_state(self.vault.engine)

    def check(self) -> None:
        """Readiness: raise ServiceUnavailable unless the database and key provider answer."""
        self.check_database()
        self.check_key_provider()

    def start_maintenance(self) -> None:
        """Background work of a serving process (key sweeps, shreds elsewhere, audit anchors,
        and the Vault health probe that readiness reads)."""
        self.maintenance.start()
        for cluster in clusters_of(self.backend):
            cluster.start_probing()
        if self.stream is not None:
            self.stream.start()

    def purge_expired(self, actor: str = "maintenance", *, batches: int = 1) -> int:
        """Policy §4: values past their retention, deleted batch by batch, each batch one
        audit event naming every subject and field removed, with the count."""
        removed = 0
        for _ in range(batches):
            pairs = purge_expired(self.vault.tx, held=self.holds.held_subjects())
            if not pairs:
                break
            by_subject: dict[str, list[str]] = {}
            for subject_id, name in pairs:
                by_subject.setdefault(subject_id, []).append(name)
            prior = sum(1 for _, name in pairs if name.endswith("@prior"))
            counts = {"removed": len(pairs) - prior, "prior_versions_removed": prior}
            self.audit.append(
                batch(
                    Caller(actor, "retention"),
                    "retention_purge",
                    "-",
                    verdict="completed",
                    subject_ids=list(by_subject),
                    fields=sorted({name.removesuffix("@prior") for _, name in pairs}),
                    items={"*": {**counts, "by_subject": by_subject}},
                    justification=None,
                )
            )
            removed += len(pairs)
        return removed

    def release_floors(self) -> None:
        """Policy §4: a held subject whose last floor has passed is shredded (its key, the
        hold key, goes); the second receipt is audited with the shredded subject's id."""
        for held in self.floors.due():
            receipt = self.shredder.shred(held.hold_id, release=True)
            self.audit.append(
                batch(
                    Caller("maintenance", "retention"),
                    "retention_release",
                    "-",
                    verdict="completed",
                    subject_ids=[held.subject_id, held.hold_id],
                    fields=list(held.fields),
                    items={"*": {"hold_id": held.hold_id, "receipt": receipt.to_dict()}},
                    justification=None,
                )
            )
            self.shredder.completion_audited([held.hold_id])
            self.floors.released(held.hold_id)

    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.vault,
            self.shredder,
            self.backend,
            grace=self.orphan_grace,
            claim_check=self.own_mounts,
        )

    def verify_vault_auth(self) -> None:
        """``serve``'s start-up: every Vault token this process holds is valid now."""
        verify = getattr(self.backend, "verify_auth", None)
        if callable(verify):
            verify()  # KeyProviderConfigError: the command exits 2 naming the address

    def check_schema_covers_data(self) -> None:
        """``init`` and ``serve``: no field with stored values may be missing from the schema
        (a custom PII_VAULT_SCHEMA_FILE that dropped one). One scan of the field names."""
        missing = self.vault.fields_without_schema()
        if missing:
            raise ConfigError(
                f"field(s) {', '.join(missing)} hold stored values but are not in the schema: "
                "keep them in PII_VAULT_SCHEMA_FILE (their values would be unreadable, "
                "unexportable and never purged)"
            )

    def vault_token_is_root(self) -> bool:
        """Whether the primary's Vault token holds the root policy (``serve`` refuses it
        off loopback)."""
        is_root = getattr(self.backend, "token_is_root", None)
        return bool(is_root()) if callable(is_root) else False

    def own_mounts(self) -> None:
        """Before a job that destroys or retires keys (reconcile, reindex, rotate-keys):
        ForeignMount unless every transit mount is unclaimed or claimed by this
        deployment (keys/claims.py); an unclaimed one is logged (``init`` claims it)."""
        for mount in verify_ours(self.backend, database_log_id(self.vault.engine)):
            log.warning(
                "transit mount %s/ carries no deployment claim: run `pii-vault init` to claim it",
                mount,
            )

    def pin_audit_log(self, actor: str, *, pinned_now: bool = False) -> tuple[str, bool, int]:
        """``init``: pin the audit log's identity outside the database (once), record the
        genesis event and anchor. Returns (log id, pinned now, anchored seq).
        ``pinned_now``: init already pinned it (through the privileged Vault client)."""
        store = self.backend.anchor_store()
        log_id = settle_log_id(store, self.vault.engine)
        pinned = pin(store, log_id) or pinned_now
        if pinned:
            self.audit.append(operator(actor, "audit_init", [], "operator", {"log_id": log_id}))
        return log_id, pinned, self.audit.checkpoint()

    def close(self) -> None:
        self.maintenance.stop()
        if self.stream is not None:
            self.stream.stop()
        self.guard.alerts.close()  # what is queued is delivered (or given up) first
        self.audit.anchor_tail()  # graceful shutdown: the unanchored tail is anchored now
        for cluster in clusters_of(self.backend):
            cluster.stop_probing()
        self.vault.close()
        self.backend.close()


def compose(
    engine: Engine,
    backend: KeyBackend,
    *,
    schema: Schema | None = None,
    purposes: Purposes | None = None,
    policy_version: str = DEFAULT_POLICY_VERSION,
    cache: DataKeyCache | None = None,
    max_dek_encryptions: int = DEFAULT_MAX_DEK_ENCRYPTIONS,
    default_region: str = "CN",
    deployment_region: str | None = None,
    majority: Majority | None = None,
    checkpoint_every: int = 500,
    anchor_seconds: float = 10.0,
    lookup_budget: tuple[int, int] = (DEFAULT_LIMIT, DEFAULT_WINDOW),
    usage: tuple[int, int] = (DEFAULT_REVEALS_PER_DAY, DEFAULT_SEARCHES_PER_MINUTE),
    tickets: TicketCheck | None = None,
    service_tokens: ServiceTokens | None = None,
    audit_sinks: Sequence[Sink] = (),
    maintenance_interval: float = 30.0,
    orphan_grace: float = 600.0,
    key_pool: int = 0,
    max_withhold_days: int = 180,
    break_glass_minutes: int = 60,
    alert_url: str | None = None,
    read_limits: ReadLimits | None = None,
    consent_ledger_days: int = 3 * 365,
    four_eyes: str = DEFAULT_RULES,
    approval_window_minutes: int = DEFAULT_WINDOW_MINUTES,
    approval_pending_hours: int = DEFAULT_PENDING_HOURS,
    alert_repeat_seconds: float = DEFAULT_REPEAT_SECONDS,
    bulk_export_alert: int = DEFAULT_BULK_EXPORTS,
    anchor_backlog_alert: int = DEFAULT_ANCHOR_BACKLOG,
) -> Runtime:
    """Wire every part over one engine and one key backend (calls to it counted)."""
    key_calls = CallCounter()
    keys = key_calls.wrap(backend)
    vault = VaultService(
        engine,
        keys,
        keys,
        schema,
        cache=cache,
        max_dek_encryptions=max_dek_encryptions,
        default_region=default_region,
        majority=majority,
        key_pool=key_pool,
        key_pool_age=orphan_grace / 2,  # the sweep never settles a key still handed out
    )
    purposes = purposes if purposes is not None else Purposes.load()
    categories = {name: spec.category for name, spec in vault.schema.fields.items()}
    store = backend.anchor_store()
    audit = AuditLog(engine, keys, anchors=store, checkpoint_every=checkpoint_every)

    def record_grant_change(actor: str, action: str, detail: Mapping[str, str]) -> None:
        audit.append(grant_change(actor, action, detail))

    anchorer = audit.anchorer

    def log_id() -> str:
        """Published shreds and grant epochs go under the audit log's pinned id."""
        if anchorer is None:
            raise ServiceUnavailable("no anchor store for published records")
        try:
            return anchorer.log
        except RuntimeError as exc:
            raise ServiceUnavailable(str(exc)) from exc

    records = store if isinstance(store, PublishedRecords) else None
    seal = GrantSeal(backend.grant_key)
    grants = GrantLedger(records, log_id) if records is not None else None
    policy = PolicyStore(vault.tx, categories, purposes, seal, record_grant_change, grants)
    consents = Consents(
        vault.tx,
        purposes,
        policy_version=policy_version,
        categories=set(categories.values()),
        seal=RowSeal(seal, "consent"),
        pseudonyms=RowSeal(seal, "consent_pseudonym"),
        ledger_days=consent_ledger_days,
    )
    restrictions = Restrictions(vault.tx, purposes, RowSeal(seal, "restriction"))
    transfers = TransferBases(vault.tx, purposes, seal)
    # One order for every request (ARCHITECTURE, "Conditions"): the first refusal names it.
    break_glass = BreakGlass(
        vault.tx, RowSeal(seal, "break_glass"), max_minutes=break_glass_minutes
    )
    try:
        rules = parse_rules(four_eyes, set(categories.values()), categories, purposes.names)
    except AccessConfigError as exc:
        raise ConfigError(str(exc)) from exc
    approvals = Approvals(
        vault.tx,
        RowSeal(seal, "approval"),
        rules,
        window_minutes=approval_window_minutes,
        pending_hours=approval_pending_hours,
    )
    conditions: list[Condition] = [
        EmergencyCondition(break_glass),
        RecipientCondition(),
        RestrictionCondition(restrictions),
        TransferCondition(
            transfers,
            consents,
            home=deployment_region or default_region,
            subject_default=default_region,
        ),
        GuardianCondition(consents),
        ConsentCondition(consents),
        SensitiveCondition(consents),
        ApprovalCondition(approvals),  # last: asked for only when all else allows
    ]
    decider = Decider(
        policy,
        consents,
        categories,
        purposes,
        conditions,
        restrictions=restrictions,
        sensitive_fields=[n for n, spec in vault.schema.fields.items() if spec.sensitive],
    )

    disclosures = Disclosures(vault.tx, max_withhold_days=max_withhold_days)
    holds = LegalHolds(vault.tx, RowSeal(seal, "legal_hold"))

    def forget(subject_id: str) -> None:
        """What a shred deletes beyond the vault's own tables (the audit log keeps the
        events: who disclosed what to whom stays provable)."""
        consents.delete_for(subject_id)
        restrictions.delete_for(subject_id)
        disclosures.delete_for(subject_id)
        approvals.delete_for(subject_id)
        holds.delete_for(subject_id)

    # What a shred deletes beyond the vault's own tables: the subject's consents.
    ledger = ShredLedger(records, log_id) if records is not None else None
    if ledger is not None:
        vault.datakeys.cache.follow_shreds(ledger.follow)
    floors = Floors(vault)
    shredder = Shredder(
        vault.tx,
        keys,
        vault.datakeys,
        keys,
        on_shredded=forget,
        ledger=ledger,
        held=holds.held,
        floors=floors,
    )
    limit, window = lookup_budget
    budget = LookupBudget(vault.tx, limit=limit, window=window)
    reveals, searches = usage
    alerts: AlertSink = HttpAlerts(alert_url, keys.sign) if alert_url else NoAlerts()
    budgets = UsageBudgets(
        vault.tx,
        reveals_per_day=reveals,
        searches_per_minute=searches,
        reads=read_limits,
        alert=alerts.send,
    )
    watch = Watch(
        alerts,
        audit,
        repeat=alert_repeat_seconds,
        bulk_exports=bulk_export_alert,
        anchor_backlog=anchor_backlog_alert,
    )
    guard = GuardedVault(
        vault,
        shredder,
        decider,
        consents,
        audit,
        budget,
        budgets,
        tickets,
        disclosures,
        break_glass,
        alerts,
        ApprovalDesk(decider, audit, approvals, alerts),
        holds,
        watch,
    )

    def close_expired_grants() -> None:
        guard.close_expired_grants()

    def expire_approvals() -> None:
        if guard.approvals is not None:
            guard.approvals.expire()

    def purge_consent_ledger() -> None:
        consents.purge_ledger()

    runtime = Runtime(
        vault=vault,
        shredder=shredder,
        policy=policy,
        principals=Principals(vault.tx, policy, service_tokens),
        consents=consents,
        transfers=transfers,
        decider=decider,
        audit=audit,
        guard=guard,
        transfer_desk=TransferDesk(decider, audit, transfers),
        budget=budget,
        usage=budgets,
        backend=backend,
        key_calls=key_calls,
        # The tick is the audit anchor's time bound too: the shorter of the two intervals.
        maintenance=Maintenance(
            min(maintenance_interval, anchor_seconds),
            [
                ("data_keys", vault.maintain),
                ("audit_anchor", audit.anchor_if_due),
                ("key_intents", partial(vault.intents.sweep, orphan_grace)),
                ("vault_auth", backend.refresh_auth),
                ("break_glass", close_expired_grants),
                ("consent_ledger", purge_consent_ledger),
                ("approvals", expire_approvals),
            ],
        ),
        holds=holds,
        floors=floors,
        orphan_grace=orphan_grace,
        stream=(
            AuditStreamer(audit, sessionmaker(engine), list(audit_sinks)) if audit_sinks else None
        ),
    )

    def purge_retention() -> None:
        runtime.purge_expired()  # §4: one batch a tick, no cron needed

    runtime.maintenance.add("retention", purge_retention)
    runtime.maintenance.add("retention_floors", runtime.release_floors)

    def watch_conditions() -> None:  # last: after this tick's anchor attempt
        failures = audit.anchor_failures + runtime.maintenance.failures.get("audit_anchor", 0)
        watch.tick(vault.damaged_count, failures)

    runtime.maintenance.add("alerts", watch_conditions)
    return runtime


def policy_version_from_env() -> str:
    version = os.environ.get("PII_VAULT_POLICY_VERSION") or DEFAULT_POLICY_VERSION
    if len(version) != 7 or version[4] != "-" or not version.replace("-", "").isdigit():
        raise ConfigError("PII_VAULT_POLICY_VERSION must look like YYYY-MM (e.g. 2024-11)")
    return version


def open_runtime(settings: Settings, *, migrate: bool = False) -> Runtime:
    """The runtime for ``settings``; bad configuration raises ConfigError before anything runs."""
    policy_version = policy_version_from_env()
    schema, purposes = _own_schema(settings)  # configuration first: nothing opened yet
    private_directory(settings.home)
    engine = make_engine(settings.effective_database_url, timeout=settings.db_timeout)
    try:
        backend = build_key_provider(settings.keys)
    except KeyProviderConfigError as exc:
        engine.dispose()
        raise ConfigError(str(exc)) from exc
    except KeyUnavailable as exc:
        engine.dispose()
        raise KeyProviderUnavailable(str(exc)) from exc
    try:
        if migrate:
            run_migrations(engine)
            run_migrations(engine, "access:migrations")
        elif require_schema(engine) == "ahead":
            log.warning(
                "the database schema is newer than this version (a rolling upgrade): "
                "finish it by replacing every process with the new version"
            )
    except BaseException:
        backend.close()
        engine.dispose()
        raise
    return compose(
        engine,
        backend,
        schema=schema,
        purposes=purposes,
        policy_version=policy_version,
        cache=DataKeyCache(
            settings.dek_cache_size,
            settings.dek_cache_ttl,
            recheck_seconds=settings.shred_recheck,
        ),
        max_dek_encryptions=settings.max_dek_encryptions,
        default_region=settings.default_region,
        deployment_region=settings.deployment_region,
        majority=Majority(settings.age_of_majority, settings.child_age),
        maintenance_interval=settings.maintenance_interval,
        checkpoint_every=settings.audit_anchor_every,
        anchor_seconds=settings.audit_anchor_seconds,
        lookup_budget=(settings.lookup_failure_budget, settings.lookup_failure_window),
        usage=(settings.reveal_budget, settings.search_budget),
        tickets=(
            HttpTickets(settings.ticket_url, settings.ticket_token) if settings.ticket_url else None
        ),
        audit_sinks=build_sinks(
            settings.audit_syslog, settings.audit_http_url, settings.audit_http_secret
        ),
        service_tokens=(
            ServiceTokens(
                settings.service_oidc_issuer,
                settings.service_oidc_audience or "",
                settings.service_oidc_claim,
            )
            if settings.service_oidc_issuer
            else None
        ),
        orphan_grace=settings.orphan_grace,
        key_pool=settings.key_pool,
        max_withhold_days=settings.disclosure_max_withhold_days,
        break_glass_minutes=settings.break_glass_minutes,
        alert_url=settings.alert_url,
        read_limits=ReadLimits(settings.read_budget, dict(settings.read_budget_roles)),
        consent_ledger_days=settings.consent_ledger_days,
        four_eyes=settings.four_eyes,
        approval_window_minutes=settings.approval_window_minutes,
        approval_pending_hours=settings.approval_pending_hours,
        alert_repeat_seconds=settings.alert_repeat_seconds,
        bulk_export_alert=settings.bulk_export_alert,
        anchor_backlog_alert=settings.anchor_backlog_alert,
    )


def _own_schema(settings: Settings) -> tuple[Schema | None, Purposes | None]:
    """A company's own fields and purposes (PII_VAULT_SCHEMA_FILE, _PURPOSES_FILE),
    checked by the same rules as the shipped files; None: the shipped ones."""
    schema = Schema.load(settings.schema_file) if settings.schema_file else None
    purposes = None
    if settings.purposes_file is not None:
        try:
            text = settings.purposes_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read PII_VAULT_PURPOSES_FILE {settings.purposes_file}"
            ) from exc
        purposes = Purposes.load(text, where=str(settings.purposes_file))
    return schema, purposes
