"""The bottom layer's small concepts: ids, the token form and its fingerprint, timestamps, job states."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest

from mcp_ci_tools.domain import states
from mcp_ci_tools.domain.ids import UUID_PATTERN, canonical_uuid, is_uuid
from mcp_ci_tools.domain.timestamps import parse_timestamp, rfc3339
from mcp_ci_tools.domain.tokens import TOKEN_FORM, fingerprint, is_token, token_hash

TOKEN = "ib_mcp_" + "0123456789abcdef" * 3
ID = "7D3F1C2B-4A5E-4F60-9B8A-1C2D3E4F5A6B"


@pytest.mark.parametrize(
    "value",
    [ID, ID.lower(), str(uuid.uuid4())],
)
def test_the_8_4_4_4_12_form_is_a_uuid_in_any_case(value: str) -> None:
    assert is_uuid(value)
    assert canonical_uuid(value) == value.lower()
    assert re.fullmatch(UUID_PATTERN, value)


@pytest.mark.parametrize(
    "value",
    [
        "{" + ID + "}",
        "urn:uuid:" + ID,
        ID.replace("-", ""),
        ID + "\n",
        " " + ID,
        "../" + ID,
        "",
        None,
        42,
        uuid.UUID(ID),
    ],
)
def test_other_forms_and_types_are_not_uuids(value: object) -> None:
    assert not is_uuid(value)
    assert canonical_uuid(value) is None


def test_the_json_schema_pattern_and_the_check_agree_on_a_trailing_newline() -> None:
    # JSON Schema's `$` ends the input; Python's matches before a final newline unless fullmatch is used.
    assert not is_uuid(ID + "\n")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (TOKEN, True),
        (TOKEN.upper().replace("IB_MCP_", "ib_mcp_"), False),  # upper-case hex
        (TOKEN[:-1], False),
        (TOKEN + "0", False),
        ("Bearer " + TOKEN, False),
        (TOKEN + "\n", False),
    ],
)
def test_only_ib_mcp_and_48_lowercase_hex_digits_are_a_token(value: str, valid: bool) -> None:
    assert is_token(value) is valid


def test_the_token_form_is_described_for_error_messages() -> None:
    assert TOKEN_FORM == "ib_mcp_ followed by 48 lowercase hex digits"


def test_the_fingerprint_is_the_start_of_infraboxs_token_hash() -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()

    assert token_hash(TOKEN) == digest
    assert fingerprint(TOKEN) == "sha256:" + digest[:12]
    assert TOKEN[7:] not in fingerprint(TOKEN)


def test_rfc3339_is_utc_with_z_to_the_second_or_millisecond() -> None:
    assert rfc3339(1_800_000_000.25) == "2027-01-15T08:00:00Z"
    assert rfc3339(1_800_000_000.25, milliseconds=True) == "2027-01-15T08:00:00.250Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00+00:00", 1_800_000_000.0),
        ("2027-01-15T08:00:00Z", 1_800_000_000.0),
    ],
)
def test_timestamps_infrabox_sends_are_parsed(text: str, expected: float) -> None:
    parsed = parse_timestamp(text)
    assert parsed is not None and parsed.timestamp() == expected


@pytest.mark.parametrize("text", [None, "", "yesterday", "2027-13-01T00:00:00"])
def test_missing_or_unreadable_timestamps_are_none(text: str | None) -> None:
    assert parse_timestamp(text) is None


def test_job_state_groups_partition_the_states() -> None:
    assert states.ACTIVE_STATES | states.TERMINAL_STATES == states.JOB_STATES
    assert not states.ACTIVE_STATES & states.TERMINAL_STATES
    assert set(states.PROBLEM_STATES) <= states.TERMINAL_STATES
    assert set(states.RESTARTABLE_STATES) <= states.TERMINAL_STATES
    assert states.ATTENTION_ORDER[: len(states.PROBLEM_STATES)] == states.PROBLEM_STATES
    assert set(states.ATTENTION_ORDER) - set(states.PROBLEM_STATES) == states.ACTIVE_STATES
