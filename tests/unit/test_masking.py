"""Secrets in any text the server passes on: found by one set of patterns, masked, counted."""

import pytest

from mcp_ci_tools.domain.masking import describe_value, mask, mask_secrets
from tests.secret_samples import AWS_KEY_ID, BEARER_VALUE, MASKED_RSA_KEY, RSA_KEY, TOKEN


def test_an_infrabox_token_is_masked_whole() -> None:
    assert mask_secrets(f"export INFRABOX_MCP_TOKEN={TOKEN}\n") == (
        "export INFRABOX_MCP_TOKEN=[MASKED:infrabox-token]\n",
        1,
    )


def test_tokens_of_sixteen_or_more_hex_digits_are_masked_and_shorter_ones_are_left_alone() -> None:
    text = "a ib_mcp_0123456789ABCDEF b ib_mcp_0123456789abcde c ib_mcp_ d"

    assert mask_secrets(text) == ("a [MASKED:infrabox-token] b ib_mcp_0123456789abcde c ib_mcp_ d", 1)


def test_a_token_cut_off_by_the_end_of_the_log_is_still_masked() -> None:
    assert mask_secrets("curl -H 'Authorization: Bearer ib_mcp_3f9c1e") == (
        "curl -H 'Authorization: Bearer [MASKED:infrabox-token]",
        1,
    )


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [MASKED:bearer]"),
        ("authorization: bearer abc.def-ghi", "authorization: bearer [MASKED:bearer]"),
        ("AUTHORIZATION: BEARER\tabc.def-ghi", "AUTHORIZATION: BEARER\t[MASKED:bearer]"),
        (
            'curl -H "Authorization: Bearer abc.def-ghi" x',
            'curl -H "Authorization: Bearer [MASKED:bearer]" x',
        ),
        (f"Bearer {BEARER_VALUE}==", "Bearer [MASKED:bearer]"),
    ],
)
def test_a_bearer_value_is_masked_and_the_word_kept_in_any_case(line: str, masked: str) -> None:
    assert mask_secrets(line) == (masked, 1)


def test_a_word_that_merely_ends_in_bearer_is_not_masked() -> None:
    assert mask_secrets("the forbearer rule") == ("the forbearer rule", 0)


def test_an_infrabox_token_sent_as_bearer_counts_as_one_secret() -> None:
    assert mask_secrets(f"Authorization: Bearer {TOKEN}") == (
        "Authorization: Bearer [MASKED:infrabox-token]",
        1,
    )


@pytest.mark.parametrize("kind", ["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "])
def test_every_line_of_a_private_key_body_is_masked_and_its_markers_kept(kind: str) -> None:
    text = (
        f"before\n-----BEGIN {kind}PRIVATE KEY-----\nAAAA\n\nBBBB\n-----END {kind}PRIVATE KEY-----\nafter\n"
    )

    assert mask_secrets(text) == (
        f"before\n-----BEGIN {kind}PRIVATE KEY-----\n[MASKED:private-key]\n\n[MASKED:private-key]\n"
        f"-----END {kind}PRIVATE KEY-----\nafter\n",
        1,
    )


def test_a_private_key_without_end_marker_is_masked_to_the_end_of_the_log() -> None:
    text = "step 3\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmUAAAAEbm9uZQ"

    assert mask_secrets(text) == (
        "step 3\n-----BEGIN OPENSSH PRIVATE KEY-----\n[MASKED:private-key]\n[MASKED:private-key]",
        1,
    )


def test_a_log_whose_first_marker_is_an_end_marker_is_masked_from_its_start() -> None:
    text = "Vt3Lw8Zr2Kp5Nc\nYt6Rb0Hs4Jd\n-----END EC PRIVATE KEY-----\nbuild ok\n"

    assert mask_secrets(text) == (
        "[MASKED:private-key]\n[MASKED:private-key]\n-----END EC PRIVATE KEY-----\nbuild ok\n",
        1,
    )


def test_a_stray_end_marker_after_a_closed_key_masks_nothing_more() -> None:
    text = f"{RSA_KEY}\nplain line\n-----END RSA PRIVATE KEY-----\nvisible\n"

    assert mask_secrets(text) == (
        f"{MASKED_RSA_KEY}\nplain line\n-----END RSA PRIVATE KEY-----\nvisible\n",
        1,
    )


def test_a_private_key_printed_with_escaped_newlines_on_one_line_is_masked() -> None:
    text = 'key="-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n" ok'

    assert mask_secrets(text) == (
        'key="-----BEGIN PRIVATE KEY-----[MASKED:private-key]-----END PRIVATE KEY-----\\n" ok',
        1,
    )


def test_aws_access_key_ids_are_masked() -> None:
    text = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID} session=ASIAY34FZKBOKMUTVV7A"

    assert mask_secrets(text) == (
        "AWS_ACCESS_KEY_ID=[MASKED:aws-access-key-id] session=[MASKED:aws-access-key-id]",
        2,
    )


def test_masking_keeps_every_newline_so_line_numbers_stay_true() -> None:
    text = f"1\n{RSA_KEY}\nAuthorization: Bearer {BEARER_VALUE}\n{TOKEN}\n{AWS_KEY_ID}\nlast"

    masked, count = mask_secrets(text)

    assert count == 4
    assert masked.count("\n") == text.count("\n")
    assert masked.split("\n")[-1] == "last"


def test_masking_masked_text_changes_nothing() -> None:
    masked, _ = mask_secrets(f"{RSA_KEY}\nBearer {BEARER_VALUE}\n{TOKEN} {AWS_KEY_ID}\n")

    assert mask_secrets(masked) == (masked, 0)


def test_a_log_without_secrets_is_returned_unchanged() -> None:
    text = "Step 1/5 : FROM python:3.11\n-----BEGIN CERTIFICATE-----\nMIIB\nAKIA-short ib_mcp_xyz\n"

    assert mask_secrets(text) == (text, 0)


def test_the_password_in_a_url_is_masked_and_the_rest_of_the_url_kept() -> None:
    masked, count = mask_secrets(
        "export DATABASE_URL=postgresql://payments:s3cr3t-Passw0rd@postgres:5432/db\n"
    )

    assert masked == "export DATABASE_URL=postgresql://payments:[MASKED:url-password]@postgres:5432/db\n"
    assert count == 1


def test_a_url_without_credentials_is_left_alone() -> None:
    text = "see https://ci.example:8443/builds/42 and http://host/a:b@c"

    assert mask_secrets(text) == (text, 0)


def test_the_password_of_a_url_without_a_user_is_masked() -> None:
    assert mask("redis://:hunter2@redis:6379/0") == "redis://:[MASKED:url-password]@redis:6379/0"


def test_infrabox_text_quoting_several_kinds_of_secret_is_masked_in_one_pass() -> None:
    text = (
        f"rejected {TOKEN} (Authorization: Bearer {BEARER_VALUE}) from postgres://ci:pw@db key {AWS_KEY_ID}"
    )

    assert mask(text) == (
        "rejected [MASKED:infrabox-token] (Authorization: Bearer [MASKED:bearer]) from "
        "postgres://ci:[MASKED:url-password]@db key [MASKED:aws-access-key-id]"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("../admin", "'../admin'"),
        ("", "an empty string"),
        (42, "a int"),
        (None, "a NoneType"),
        (TOKEN, "'[MASKED:infrabox-token]'"),
        ("x" * 100, "a 100-character string starting 'xxxxxxxxxxxxxxxxxxxxxxxx'"),
    ],
)
def test_a_rejected_value_is_described_short_and_secret_free(value: object, shown: str) -> None:
    assert describe_value(value) == shown
