"""The ``pii-vault`` command line.

Errors print one clear line and exit non-zero, never a traceback.
Past 400 lines (about 680): one short function per command. The shared helpers
(errors, exit codes, the runtime, operator events) are in ``api/cli_base.py``, so
command groups can move to modules of their own (``api/cli_transfers.py`` first);
the others are still here.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from typing import Any

import click

from access.log_identity import identity_record, settle_log_id
from access.policy import Rule
from access.runtime import Runtime
from api.app import DEFAULT_MAX_BODY, AppConfig, create_app
from api.cli_base import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    F,
    _one_line_errors,
    _operator_event,
    _operator_name,
    _runtime,
    stop_on_signals,
)
from api.cli_import import import_subjects
from api.cli_records import breach_scope, seal_records
from api.cli_transfers import transfers
from vault.config import Settings
from vault.errors import ConfigError

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_UNAVAILABLE", "main"]  # the exit codes callers test


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pii-vault", prog_name="pii-vault")
def main() -> None:
    """pii-vault: encrypted personal-data vault with crypto-shredding.

    Configured by PII_VAULT_HOME, PII_VAULT_DATABASE_URL, PII_VAULT_KEY_PROVIDER
    (local|transit), VAULT_ADDR and VAULT_TOKEN.
    """


@main.command()
@_one_line_errors
def init() -> None:
    """Create the database schema and, for transit, the Vault mount, keys and policy. Idempotent.

    With transit, VAULT_TOKEN must be privileged (mounts, policies); the service
    then runs with a token holding only the `pii-vault` policy.
    """
    settings = Settings.from_env()
    engine = _migrated_engine(settings)  # first: the audit log's id decides the service policy
    pinned_now = False
    if settings.keys.kind == "transit":
        from keys.anchors import KvAnchors
        from keys.factory import primary_cluster
        from keys.transit import POLICY_NAME
        from keys.transit_setup import bootstrap_transit, pin_log_identity

        if not settings.keys.addrs or not settings.keys.vault_token:
            raise ConfigError(
                "init with PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR (or "
                "PII_VAULT_VAULT_ADDRS) and VAULT_TOKEN"
            )
        # Through the cluster client: any node will do (our own writes are read back
        # consistently, a dead node is skipped).
        slow = dataclasses.replace(settings.keys, timeout=max(10.0, settings.keys.timeout))
        cluster = primary_cluster(slow)
        client = cluster.client(settings.keys.vault_token)
        here = [s for s in settings.keys.shards if s.addr is None]
        # At the active node: a standby's answers (its policy cache, say) may trail it, and
        # init must report exactly what it repaired.
        active = cluster.authority() or cluster.current
        with cluster.pinned(active):
            log_id = settle_log_id(KvAnchors(client), engine)
            steps = bootstrap_transit(
                client,
                mount=settings.keys.transit_mount,
                shard_mounts=[s.mount for s in here],
                log_id=log_id,
            )
            pinned_now = pin_log_identity(client, identity_record(log_id))
        for step in steps:
            click.echo(f"vault: {step}")
        click.echo(
            f"vault: transit mount '{settings.keys.transit_mount}/', keys pii-index and pii-audit, "
            f"policy '{POLICY_NAME}' ready"
        )
        for shard in here:
            click.echo(f"vault: shard {shard.number} on mount '{shard.mount}/' ready")
        for shard in settings.keys.shards:
            if shard.addr is not None:
                click.echo(
                    f"vault: shard {shard.number} is on {shard.addr}: run `pii-vault init-shard "
                    f"{shard.number}` with that cluster's privileged VAULT_TOKEN"
                )
    engine.dispose()
    with _runtime(settings, migrate=True) as runtime:
        runtime.check()
        # The genesis anchor: from now on the log is never empty behind an anchor.
        log_id, pinned, _ = runtime.pin_audit_log(_operator_name(), pinned_now=pinned_now)
        seeded = runtime.policy.seed_default(_operator_name())
        sealed = runtime.policy.seal_existing(_operator_name())
        anchored = runtime.audit.checkpoint()
    click.echo(
        f"audit: log {log_id} {'pinned in the anchor store' if pinned else 'is the pinned log'}"
        f", anchored up to seq {anchored}"
    )
    for row in sealed:
        click.echo(f"grants: sealed {row} (it predates grant tags)")
    click.echo(f"database: schema up to date ({_redact_url(settings.effective_database_url)})")
    click.echo(
        "policy: default policy loaded from access/policy.csv"
        if seeded
        else "policy: existing policy kept"
    )
    click.echo(f"key provider: {settings.keys.kind} ready")


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _migrated_engine(settings: Settings) -> Any:
    from vault.db import make_engine, migrate, private_directory

    private_directory(settings.home)
    engine = make_engine(settings.effective_database_url, timeout=settings.db_timeout)
    migrate(engine)
    migrate(engine, "access:migrations")
    return engine


@main.command("init-shard")
@click.argument("number", type=int)
@click.option("--service-token", is_flag=True, help="Also print a token for the service.")
@_one_line_errors
def init_shard(number: int, service_token: bool) -> None:
    """Set up subject-key shard NUMBER on its own cluster (PII_VAULT_KEY_SHARDS). Idempotent.

    VAULT_TOKEN must be privileged on that cluster; the service then uses a token
    (PII_VAULT_SHARD_<N>_TOKEN) holding only the shard policy: subject keys on that mount.
    """
    from keys.cluster import VaultCluster, parse_addrs
    from keys.transit import POLICY_NAME
    from keys.transit_setup import bootstrap_shard, create_service_token

    settings = Settings.from_env()
    shard = next((s for s in settings.keys.shards if s.number == number), None)
    if shard is None or shard.addr is None:
        raise ConfigError(
            f"shard {number} is not in PII_VAULT_KEY_SHARDS as another cluster's mount "
            "(a mount on the primary's cluster is set up by `pii-vault init`)"
        )
    if not settings.keys.vault_token:
        raise ConfigError("init-shard needs that cluster's privileged token in VAULT_TOKEN")
    client = VaultCluster(
        parse_addrs(shard.addr),
        connect_timeout=settings.keys.connect_timeout,
        timeout=max(10.0, settings.keys.timeout),
    ).client(settings.keys.vault_token)
    for step in bootstrap_shard(client, mount=shard.mount, policy_name=POLICY_NAME):
        click.echo(f"vault: {step}")
    click.echo(f"vault: shard {number} on {shard.addr}, mount '{shard.mount}/' ready")
    if service_token:
        click.echo(create_service_token(client, policy_name=POLICY_NAME))


def _shreds_completed(runtime: Runtime, subject_ids: list[str]) -> None:
    """Record the "completed" event of finished shreds, then that it is recorded (so
    `shred --pending` and `reconcile` stop listing them)."""
    done = sorted(set(subject_ids))
    if done:
        _operator_event(runtime, "shred", done, "completed")
        runtime.shredder.completion_audited(done)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


@main.command()
@click.argument("subject_id", required=False)
@click.option("--pending", is_flag=True, help="Complete every shred left pending (Vault was down).")
@_one_line_errors
def shred(subject_id: str | None, pending: bool) -> None:
    """Crypto-shred SUBJECT_ID and print its signed deletion receipt (JSON)."""
    if bool(subject_id) == pending:
        raise click.UsageError("give either SUBJECT_ID or --pending")
    with _runtime() as runtime:
        shredder = runtime.shredder
        if pending:
            _operator_event(runtime, "shred", shredder.pending(), "operator")
            outcome = shredder.complete_pending()
            # Shreds that finished but whose "completed" event was never recorded (the audit
            # log failed after the key was destroyed) are recorded here too.
            _shreds_completed(
                runtime, [r.subject_id for r in outcome.completed] + shredder.unaudited()
            )
            for receipt in outcome.completed:
                click.echo(json.dumps(receipt.to_dict(), sort_keys=True))
            click.echo(
                f"completed {len(outcome.completed)} pending shred(s); "
                f"{len(outcome.pending)} still pending",
                err=True,
            )
            for subject_id in outcome.undecided:
                click.echo(
                    f"NOT completed: {subject_id} is marked shredding but no shred was decided "
                    "(nothing published outside the database: set with SQL?); its key is kept",
                    err=True,
                )
            if outcome.undecided:
                _operator_event(runtime, "shred_refused", outcome.undecided, "deny")
            if outcome.pending:
                sys.exit(EXIT_UNAVAILABLE)
            if outcome.undecided:
                sys.exit(EXIT_ERROR)
            return
        _operator_event(runtime, "shred", [str(subject_id)], "operator")
        receipt = shredder.shred(str(subject_id))  # consents go with it (on_shredded)
        _shreds_completed(runtime, [receipt.subject_id])
        click.echo(json.dumps(receipt.to_dict(), sort_keys=True, indent=2))


@main.command("shred-deactivated")
@_one_line_errors
def shred_deactivated() -> None:
    """Shred every subject deactivated more than PII_VAULT_DEACTIVATION_GRACE_DAYS ago and
    not reactivated (policy §5); prints each signed receipt (JSON). Run it daily."""
    import datetime as dt

    settings = Settings.from_env()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.deactivation_grace_days)
    with _runtime() as runtime:
        restrictions = runtime.decider.restrictions
        due = restrictions.deactivated_before(cutoff) if restrictions is not None else []
        shredded = 0
        for subject_id in due:
            if runtime.vault.status(subject_id) != "active":
                continue
            _operator_event(runtime, "shred", [subject_id], "operator", {"why": "deactivated"})
            receipt = runtime.shredder.shred(subject_id)
            _shreds_completed(runtime, [receipt.subject_id])
            click.echo(json.dumps(receipt.to_dict(), sort_keys=True))
            shredded += 1
    click.echo(f"shredded {shredded} deactivated subject(s) past the grace period", err=True)


@main.command()
@click.option(
    "--keep",
    is_flag=True,
    help="Afterwards keep the API and the console running (Ctrl-C stops), and the directory.",
)
@_one_line_errors
def demo(keep: bool) -> None:
    """The whole story on embedded defaults: managed OpenBao + SQLite in a temporary directory.

    OpenBao is also the console's identity provider: with --keep, open the printed
    console address and sign in as one of the people it prints."""
    from api.demo.story import run_demo

    stop_on_signals()
    if not run_demo(click.echo, keep=keep).ok:
        sys.exit(EXIT_ERROR)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes of the production server (threaded, slow clients bounded).",
)
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "granian"]),
    default="gunicorn",
    show_default=True,
    help="gunicorn bounds slow request bodies; granian (faster, docs/BENCHMARKS.md) does "
    "not: use it only behind a proxy that buffers whole requests.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Werkzeug's development server instead: one process, for local trials only.",
)
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=click.IntRange(1024, 64 * 1024 * 1024),
    help="Request body limit in bytes.",
)
@_one_line_errors
def serve(host: str, port: int, workers: int, server: str, dev: bool, max_body: int) -> None:
    """Serve the HTTP API with the production server (``--dev``: the development server).
    Configuration is checked before the first request is taken."""
    settings = Settings.from_env()
    with _runtime(settings) as runtime:  # bad configuration fails here, in one line
        runtime.check()
        runtime.policy.current()
        runtime.audit.check_extends_anchors()  # never anchor a history this service did not write
        if dev:
            # SIGTERM ends the development server through the `with` above, so the runtime
            # closes and anchors its tail (gunicorn workers do it in `worker_exit`).
            signal.signal(signal.SIGTERM, _stop)
            runtime.start_maintenance()
            config = AppConfig(settings=settings, max_body_bytes=max_body, runtime=runtime)
            app = create_app(config)
            click.echo(f"pii-vault serving on http://{host}:{port} (development server)", err=True)
            app.run(host=host, port=port, threaded=True, use_reloader=False)
            return
    # Each worker process opens its own connections.
    from api.server import run_granian, run_gunicorn

    run = run_granian if server == "granian" else run_gunicorn
    run(host, port, workers, max_body, settings)


@main.command()
@click.option("--dry-run", is_flag=True, help="Report only; change nothing.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=None,
    help="Seconds a key without a row may be in flight (default PII_VAULT_ORPHAN_GRACE). "
    "0 only when no server is running.",
)
@_one_line_errors
def reconcile(dry_run: bool, grace: int | None) -> None:
    """Make the database and the key provider agree (run from cron; exit 1 means alert).

    Destroys subject keys without rows older than PII_VAULT_ORPHAN_GRACE, marks active
    subjects whose key is missing `damaged`, completes stuck shreds and records missing
    shred-completion events. Prints a JSON report.
    """
    with _runtime() as runtime:
        if not dry_run:
            _operator_event(runtime, "reconcile", [], "operator")
        if grace is not None:
            runtime.orphan_grace = float(grace)
        report = runtime.reconciler().run(dry_run=dry_run)
        if not dry_run:
            _shreds_completed(
                runtime,
                report.shreds_completed + report.shreds_unaudited + report.shreds_reapplied,
            )
            detail = {
                "orphan_keys_destroyed": str(len(report.orphan_keys)),
                "subjects_marked_damaged": str(len(report.newly_damaged)),
                "shreds_completed": str(len(report.shreds_completed)),
            }
            _operator_event(runtime, "reconcile", report.newly_damaged, "completed", detail)
    click.echo(json.dumps(report.to_dict(), sort_keys=True, indent=2))
    if report.broken:
        sys.exit(EXIT_ERROR)


@main.command("purge-expired")
@_one_line_errors
def purge_expired() -> None:
    """Delete field values past their retention period (policy §4) now. A serving process
    does this in its maintenance tick; each batch is audited with its subjects and fields."""
    with _runtime() as runtime:
        count = runtime.purge_expired("operator", batches=1_000_000)
    click.echo(f"purged {count} expired field value(s)")


@main.command("age-out")
@_one_line_errors
def age_out() -> None:
    """Clear the minor flag of subjects whose stored date of birth says they have come of
    age (policy §6); run it daily from cron. Each one is audited."""
    with _runtime() as runtime:
        attributes = runtime.guard.attributes
        due = attributes.come_of_age()
        done = []
        for subject_id in due:
            _operator_event(runtime, "minor_aged_out", [subject_id], "operator")
            if attributes.age_out(subject_id):
                _operator_event(runtime, "minor_aged_out", [subject_id], "completed")
                done.append(subject_id)
    click.echo(f"aged out {len(done)} subject(s) at majority")


@main.command()
@_one_line_errors
def reindex() -> None:
    """Re-key the blind index and retire the old key versions (run from cron after shreds).

    Needs a privileged VAULT_TOKEN (the service's may not rotate or trim the index key).
    Afterwards no digest in an older copy of the database can be confirmed by anyone.
    """
    from keys.provider import IndexKeyAdmin
    from vault.reindex import reindex as run_reindex

    with _runtime() as runtime:
        if not isinstance(runtime.backend, IndexKeyAdmin):
            raise ConfigError("this key provider cannot rotate index keys")
        _operator_event(runtime, "reindex", [], "operator")
        report = run_reindex(runtime.vault, runtime.backend)
        _operator_event(runtime, "reindex", [], "completed")
    click.echo(
        f"reindexed {report.digests} digest(s) of {report.subjects} subject(s) under index-key "
        f"version {report.version}; older versions retired"
    )


# -- principals -----------------------------------------------------------------------


@main.group()
def principal() -> None:
    """Manage principals (services and people) and their API keys."""


@principal.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role from the policy.")
@click.option(
    "--region",
    default=None,
    help="Where it works from (policy §7); default PII_VAULT_DEPLOYMENT_REGION.",
)
@click.option(
    "--kind",
    type=click.Choice(["internal", "processor", "controller", "affiliate", "authority"]),
    default="internal",
    show_default=True,
    help="Who receives what it reads (policy §3(1)).",
)
@click.option("--recipient", default=None, help="The recipient's name (not internal).")
@click.option("--country", default=None, help="The recipient's country, e.g. SG.")
@click.option("--agreement", default=None, help="The agreement it acts under (a processor's DPA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_one_line_errors
def principal_create(
    name: str,
    roles: tuple[str, ...],
    region: str | None,
    kind: str,
    recipient: str | None,
    country: str | None,
    agreement: str | None,
    as_json: bool,
) -> None:
    """Create NAME (svc:... or user:...) and print its API key once; only a hash is stored."""
    from access.facts import Recipient

    who = Recipient(kind, recipient, country, agreement)
    with _runtime() as runtime:
        info, key = runtime.principals.create(
            name, list(roles), _operator_name(), region=region, recipient=who
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": info.name,
                    "roles": list(info.roles),
                    "region": info.region,
                    "api_key": key,
                }
            )
        )
    else:
        click.echo(f"created {info.name} with roles {', '.join(info.roles)}")
        click.echo(f"API key (shown once, store it now): {key}")


@principal.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def principal_list(as_json: bool) -> None:
    """List principals (never their keys)."""
    with _runtime() as runtime:
        principals = runtime.principals.list()
    rows = [
        {
            "name": p.name,
            "roles": list(p.roles),
            "disabled": p.disabled,
            "created_at": p.created_at.isoformat(),
            "region": p.region,
        }
        for p in principals
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "active"
        click.echo(f"{row['name']:<32} {state:<9} {','.join(row['roles'])}")  # type: ignore[arg-type]


@principal.command("disable")
@click.argument("name")
@_one_line_errors
def principal_disable(name: str) -> None:
    """Disable NAME: its key stops working and its grants vanish at once."""
    with _runtime() as runtime:
        runtime.principals.disable(name, _operator_name())
    click.echo(f"disabled {name}")


@principal.command("enable")
@click.argument("name")
@_one_line_errors
def principal_enable(name: str) -> None:
    """Re-enable NAME (refused if its row was edited outside the vault)."""
    with _runtime() as runtime:
        runtime.principals.enable(name, _operator_name())
    click.echo(f"enabled {name}")


# -- audit and policy -------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@_one_line_errors
def audit_verify() -> None:
    """Recompute the hash chain and check checkpoint signatures; exit 1 naming the first bad seq."""
    with _runtime() as runtime:
        result = runtime.guard.verified()  # a failure alerts (PII_VAULT_ALERT_URL)
    click.echo(result.summary())
    if not result.ok:
        sys.exit(EXIT_ERROR)


@audit.command("grants")
@click.option(
    "--accept-restore",
    is_flag=True,
    help="After restoring a backup on purpose: seal the grants as they are now (rows whose "
    "tags verify) as the newest state. Forged rows stay refused.",
)
@_one_line_errors
def audit_grants(accept_restore: bool) -> None:
    """List grant rows that fail their tags or the sealed grant state (written with SQL, or
    restored from an older backup)."""
    with _runtime() as runtime:
        findings = runtime.policy.findings()
        if accept_restore and findings:
            for finding in findings:
                click.echo(finding)
            accepted = runtime.policy.accept_restored(_operator_name())
            click.echo(
                f"accepted the restored grants: {len(accepted)} principal(s) "
                f"({', '.join(accepted)[:2000]}); disable or rotate any that should not be back"
            )
            return
    for finding in findings:
        click.echo(finding)
    if findings:
        click.echo(f"{len(findings)} grant finding(s): these rows grant nothing", err=True)
        sys.exit(EXIT_ERROR)
    click.echo("grants intact: every principal and policy rule verifies")


@main.group()
def policy() -> None:
    """The access policy."""


@policy.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def policy_list(as_json: bool) -> None:
    """Print every rule in force, in Casbin's CSV form."""
    with _runtime() as runtime:
        rules = runtime.policy.rules()
    if as_json:
        click.echo(json.dumps([vars(r) for r in rules]))
        return
    for rule in rules:
        click.echo(str(rule))


def _rule(sub: str, obj: str, act: str, purpose: str, deny: bool) -> Rule:
    return Rule(sub, obj, act, purpose, "deny" if deny else "allow")


def _rule_arguments(fn: F) -> F:
    """SUBJECT OBJECT ACTION PURPOSE [--deny]: one policy rule on the command line."""
    for decorator in reversed(
        [
            click.argument("subject"),
            click.argument("obj", metavar="OBJECT"),
            click.argument("action"),
            click.argument("purpose"),
            click.option("--deny", is_flag=True, help="A deny rule (deny always wins)."),
        ]
    ):
        fn = decorator(fn)
    return fn


@policy.command("add")
@_rule_arguments
@_one_line_errors
def policy_add(subject: str, obj: str, action: str, purpose: str, deny: bool) -> None:
    """Add a rule (checked first: a bad rule changes nothing); takes effect in every worker."""
    rule = _rule(subject, obj, action, purpose, deny)
    with _runtime() as runtime:
        _operator_event(runtime, "admin", [], "operator", {"policy_add": str(rule)})
        runtime.policy.add_rules([rule], _operator_name())
    click.echo(f"added: {rule}")


@policy.command("remove")
@_rule_arguments
@_one_line_errors
def policy_remove(subject: str, obj: str, action: str, purpose: str, deny: bool) -> None:
    """Remove a rule; takes effect in every worker at their next request."""
    rule = _rule(subject, obj, action, purpose, deny)
    with _runtime() as runtime:
        _operator_event(runtime, "admin", [], "operator", {"policy_remove": str(rule)})
        removed = runtime.policy.remove_rule(rule, _operator_name())
    if not removed:
        click.echo(f"pii-vault: error: no such rule: {rule}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"removed: {rule}")


@policy.command("explain")
@click.argument("principal_name", metavar="PRINCIPAL")
@click.argument("field")
@click.argument("action")
@click.argument("purpose")
@click.option(
    "--subject",
    "subject_id",
    default=None,
    help="Also decide for this subject: which condition (restriction, transfer, minors, "
    "consent, sensitive) decides, if one does.",
)
@_one_line_errors
def policy_explain(
    principal_name: str, field: str, action: str, purpose: str, subject_id: str | None
) -> None:
    """Print the decision for PRINCIPAL FIELD ACTION PURPOSE, the rule that decided it and
    every condition such a request must also pass."""
    from access.facts import SubjectFacts
    from access.policy import ACTIONS, PURPOSELESS
    from access.purposes import Justification

    if action not in ACTIONS:
        raise click.UsageError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    request_purpose = None if action in PURPOSELESS else purpose
    with _runtime() as runtime:
        decider = runtime.decider
        if field != "*" and field not in decider.field_categories:
            raise click.UsageError(f"unknown field {field!r}")
        decision = decider.decide(principal_name, [field], action, request_purpose, gates=False)
        spec = None if request_purpose is None else decider._purpose(action, request_purpose)
        conditions = decider.explain(action, request_purpose)
        region = next(
            (p.region for p in runtime.principals.list() if p.name == principal_name), None
        )
        gated = None
        if subject_id is not None:
            info = runtime.vault.describe(subject_id)
            facts = SubjectFacts(info.subject_id, info.is_minor, info.region)
            # As if justified: the question is what the conditions say of this subject.
            assumed = Justification("EXPLAIN-1", "policy explain") if spec else None
            gated = decider.decide(
                principal_name, [field], action, request_purpose, facts, assumed, region=region
            )
    (only,) = decision.fields.values()
    click.echo(f"decision: {only.redaction}" + (f" ({only.reason})" if only.reason else ""))
    click.echo(f"rule: {only.rule or '(no rule matched: default deny)'}")
    if spec is not None and spec.requires_justification:
        click.echo(f"note: purpose {purpose} also needs a justification per request")
    if only.redaction != "denied":
        for name, line in conditions:
            click.echo(f"condition {name}: {line}")
    if gated is not None:
        (one,) = gated.fields.values()
        if one.visible:
            click.echo(f"for subject {subject_id}: {one.redaction} (every condition passed)")
        else:
            by = one.by or ("justification" if one.reason == "justification_required" else "policy")
            click.echo(f"for subject {subject_id}: denied ({one.reason}) by {by}")
    if action == "reveal" and only.redaction == "plain":
        usage = runtime.usage
        click.echo(
            f"note: each person may reveal at most {usage.reveals_per_day} subjects per purpose "
            "per day (reveal_budget_spent beyond)"
            + (
                "; the ticket must be open and assigned to them (ticket_rejected)"
                if runtime.guard.tickets is not None
                else ""
            )
        )


main.add_command(transfers)
main.add_command(seal_records)
main.add_command(breach_scope)
main.add_command(import_subjects)


if __name__ == "__main__":  # pragma: no cover
    main()
