"""Your own fields and purposes (issue 23, finding 7): PII_VAULT_SCHEMA_FILE and
PII_VAULT_PURPOSES_FILE, checked at start-up by the shipped files' rules; a field
that still holds values may not be dropped."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from access.runtime import open_runtime
from api.cli import EXIT_CONFIG
from tests.test_cli import local_env, run
from vault.config import Settings

LOYALTY = """
[fields.loyalty_number]
label = "Loyalty card number"
category = "basic"
type = "string"
validation = "text"
max_length = 32
mask = "last4"
token = "random"
searchable = true
retention = "account"
"""

PROGRAMME = """
[purposes.loyalty_programme]
description = "Our loyalty programme (consented)"
requires_consent = true
requires_justification = false
"""


def _shipped(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _env(tmp_path: Path, schema: str, purposes: str | None = None) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "fields.toml").write_text(schema, encoding="utf-8")
    env = local_env(tmp_path / "home") | {"PII_VAULT_SCHEMA_FILE": str(tmp_path / "fields.toml")}
    if purposes is not None:
        (tmp_path / "purposes.toml").write_text(purposes, encoding="utf-8")
        env["PII_VAULT_PURPOSES_FILE"] = str(tmp_path / "purposes.toml")
    return env


def test_own_fields_and_purposes_are_used(tmp_path: Path) -> None:
    schema = _shipped("vault", "fields.toml") + LOYALTY
    env = _env(tmp_path, schema, _shipped("access", "purposes.toml") + PROGRAMME)
    code, _, err = run(["init"], env)
    assert code == 0, err
    runtime = open_runtime(Settings.from_env(env))
    try:
        created = runtime.vault.create_subject({"loyalty_number": "LOY-12345678"})
        assert "loyalty_number" in created.tokens
        assert runtime.vault.lookup("loyalty_number", "LOY-12345678") == [created.subject_id]
        assert "loyalty_programme" in runtime.policy.purposes.names
    finally:
        runtime.close()
    assert run(["principal", "create", "svc:x", "--role", "registration-service"], env)[0] == 0
    code, _, err = run(
        ["policy", "explain", "svc:x", "loyalty_number", "detokenize", "loyalty_programme"], env
    )
    assert code == 0, err  # a field and a purpose `policy explain` knows

    # The field dropped from the schema while a value exists: refused, with the reason.
    code, _, err = run(
        ["init"],
        _env(tmp_path, _shipped("vault", "fields.toml"))
        | {"PII_VAULT_PURPOSES_FILE": env["PII_VAULT_PURPOSES_FILE"]},
    )
    assert code == EXIT_CONFIG
    assert "loyalty_number hold stored values but are not in the schema" in err, err


def test_a_bad_file_stops_start_up_naming_it(tmp_path: Path) -> None:
    broken = _shipped("vault", "fields.toml") + LOYALTY.replace('"basic"', '"loyalty"')
    code, _, err = run(["shred", "--pending"], _env(tmp_path, broken))
    assert code == EXIT_CONFIG
    assert "fields.toml: fields.loyalty_number: unknown category 'loyalty'" in err, err
    purposes = _shipped("access", "purposes.toml") + PROGRAMME.replace(
        "requires_justification", "x"
    )
    code, _, err = run(
        ["shred", "--pending"], _env(tmp_path / "p", _shipped("vault", "fields.toml"), purposes)
    )
    assert code == EXIT_CONFIG and "purposes.toml: loyalty_programme needs exactly" in err, err
    code, _, err = run(
        ["shred", "--pending"], local_env(tmp_path) | {"PII_VAULT_SCHEMA_FILE": "/nope.toml"}
    )
    assert code == EXIT_CONFIG and "no such file /nope.toml" in err
