"""The field schema: complete against DESIGN.md, strict at load, validators and masks."""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import ConfigError
from vault.formats import FieldValueError
from vault.schema import Retention, Schema

# DESIGN.md "Field schema", copied as the requirement the data file must meet.
DESIGN_FIELDS = {
    "basic": {"full_name", "date_of_birth", "gender", "address", "phone", "email", "nationality"},
    "identity": {"id_card_number", "passport_number", "drivers_license_number"},
    "biometric": {"voiceprint", "face_template"},
    "online": {"ip_address", "digital_certificate"},
    "financial": {"card_number", "bank_account", "transaction_record", "account_balance"},
    "browsing": {"browsing_history"},
    "device": {"device_model", "mac_address", "os_type", "device_id"},
    "third_party": {"recipient_name", "recipient_phone", "recipient_address"},
}

SCHEMA = Schema.load()


def test_schema_has_every_design_field_in_its_category() -> None:
    assert {c: set(f) for c, f in SCHEMA.by_category().items()} == DESIGN_FIELDS


def test_searchable_fields_and_binary_biometrics() -> None:
    searchable = {n for n, s in SCHEMA.fields.items() if s.searchable}
    assert {
        "email",
        "phone",
        "id_card_number",
        "passport_number",
        "drivers_license_number",
    } <= searchable
    assert SCHEMA["face_template"].type == SCHEMA["voiceprint"].type == "binary"
    assert SCHEMA["card_number"].token == "card"


def test_ecommerce_records_are_kept_three_years() -> None:
    written = dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert SCHEMA["transaction_record"].retention.expires(written) == dt.datetime(
        2027, 2, 28, tzinfo=dt.UTC
    )
    assert SCHEMA["passport_number"].retention.expires(written) is None


@pytest.mark.parametrize(
    ("field", "given_value", "stored"),
    [
        ("email", "Jane.Doe@Example.COM", "Jane.Doe@example.com"),
        ("phone", "+1 (415) 555-0100", "+14155550100"),
        ("card_number", "4242 4242 4242 4242", "4242424242424242"),
        ("date_of_birth", "1990-05-17", "1990-05-17"),
        ("nationality", "de", "DE"),
        ("passport_number", "x1234-5678", "X12345678"),
        ("ip_address", "2001:DB8::1", "2001:db8::1"),
        ("mac_address", "aa-bb-cc-dd-ee-ff", "AA:BB:CC:DD:EE:FF"),
        ("account_balance", "-12.50", "-12.50"),
        ("full_name", "Zoë O'Brien", "Zoë O'Brien"),
    ],
)
def test_valid_values_are_normalised(field: str, given_value: str, stored: str) -> None:
    assert SCHEMA[field].normalize(given_value) == stored.encode()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("email", "not-an-email", "not_an_email"),
        ("phone", "555-0100", "not_e164"),
        ("card_number", "4242424242424241", "luhn_check_failed"),
        ("card_number", "4242", "not_a_card_number"),
        ("date_of_birth", "17/05/1990", "not_iso_date"),
        ("date_of_birth", "2999-01-01", "date_out_of_range"),
        ("nationality", "Germany", "not_iso3166_alpha2"),
        ("ip_address", "999.1.1.1", "not_an_ip_address"),
        ("full_name", "   ", "empty"),
        ("full_name", "a\x00b", "control_characters"),
        ("full_name", "x" * 201, "too_long"),
        ("face_template", "not bytes", "expected_bytes"),
        ("email", b"bytes", "expected_string"),
    ],
)
def test_invalid_values_are_rejected_with_a_code_not_the_value(
    field: str, value: str | bytes, reason: str
) -> None:
    with pytest.raises(FieldValueError) as info:
        SCHEMA[field].normalize(value)
    assert info.value.reason == reason
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("field", "stored", "masked"),
    [
        ("email", "jane@example.com", "j***@example.com"),
        ("card_number", "4242424242424242", "************4242"),
        ("passport_number", "X12341234", "*****1234"),
        ("full_name", "Jane Doe", "J*** D***"),
        ("date_of_birth", "1990-05-17", "1990-**-**"),
        ("ip_address", "192.168.1.20", "192.168.*.*"),
        ("mac_address", "AA:BB:CC:DD:EE:FF", "AA:BB:CC:**:**:**"),
        ("browsing_history", "visited /shoes", "[redacted]"),
    ],
)
def test_masks(field: str, stored: str, masked: str) -> None:
    assert SCHEMA[field].masked(stored.encode()) == masked
    assert SCHEMA["face_template"].masked(b"\x00\x01") == "[redacted]"


def _shipped() -> dict:
    return tomllib.loads(resources.files("vault").joinpath("fields.toml").read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["fields"]["email"].update(category="nope"), "unknown category"),
        (lambda d: d["fields"]["email"].update(validation="nope"), "unknown validation"),
        (lambda d: d["fields"]["email"].update(mask="nope"), "unknown mask"),
        (lambda d: d["fields"]["email"].update(retention="forever"), "retention"),
        (lambda d: d["fields"]["email"].update(extra=1), "unknown"),
        (lambda d: d["fields"]["email"].pop("searchable"), "missing"),
        (lambda d: d["fields"]["face_template"].update(searchable=True), "binary"),
        (lambda d: d["fields"]["email"].update(token="card"), "luhn"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_bad_schema_is_rejected_at_load(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _shipped()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        Schema.from_dict(data)


def test_retention_parsing() -> None:
    assert Retention.parse("account").until_account_deletion
    assert Retention.parse("P1Y6M").months == 6
    for bad in ("P", "3Y", "forever", "P-1Y"):
        with pytest.raises(ValueError):
            Retention.parse(bad)


@given(st.sampled_from(sorted(SCHEMA.fields)), st.text(max_size=300))
def test_validators_never_crash_on_arbitrary_text(field: str, text: str) -> None:
    spec = SCHEMA[field]
    try:
        stored = spec.normalize(text)
    except FieldValueError:
        return
    assert len(stored.decode()) <= spec.max_length
    assert spec.normalize(stored.decode()) == stored  # normalising is idempotent
    spec.masked(stored)
