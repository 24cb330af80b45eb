"""Properties of the masker and of terminal-safe text, over random text (hypothesis)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_ci_tools.domain import masking
from mcp_ci_tools.domain.masking import mask, mask_secrets
from mcp_ci_tools.domain.terminal import terminal_safe
from tests.leak_samples import LEAKS

_BIDI = {
    chr(c) for c in [0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# Text a CI log might hold: letters, punctuation, secret-ish prefixes, escapes and controls of every kind.
_PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        "9",
        "_",
        "-",
        ".",
        "/",
        ":",
        "=",
        " ",
        "\t",
        "\n",
        "\r",
        "'",
        '"',
        "*",
        "[",
        "]",
        "\x1b",
        "\x1b[",
        "\x1b]",
        "\x07",
        "\x9b",
        "\x9c",
        "\x00",
        "\x7f",
        "\u202e",
        "\u2066",
        "é",
        "✓",
        "ghp_",
        "token=",
        "password: ",
        "Bearer ",
        "://u:",
        "@",
        "AKIA",
        "eyJ",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "[MASKED:",
        "ib_mcp_",
        "xoxb-",
        "glpat-",
        "AccountKey=",
        "docker login -p ",
    ]
)
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=3)), max_size=60).map("".join)
_SETTINGS = settings(max_examples=200, deadline=None)


def _unsafe(char: str) -> bool:
    return (unicodedata.category(char) == "Cc" and char not in "\n\t") or char in _BIDI


@_SETTINGS
@given(_TEXT)
def test_no_control_character_survives_terminal_safe(text: str) -> None:
    safe = terminal_safe(text)

    assert not [char for char in safe if _unsafe(char)]
    assert safe.count("\n") == text.count("\n")


@_SETTINGS
@given(_TEXT)
def test_masking_keeps_every_line_and_masking_again_changes_nothing(text: str) -> None:
    safe = terminal_safe(text)
    masked = mask(safe)

    assert masked.count("\n") == text.count("\n")
    assert mask_secrets(masked) == (masked, 0)


@_SETTINGS
@given(st.sampled_from(sorted(LEAKS)), _TEXT, _TEXT, st.sampled_from([" ", "\n", " \x1b[0m", "\t"]))
def test_a_secret_anywhere_in_random_text_is_masked(kind: str, before: str, after: str, gap: str) -> None:
    line, secret, _ = LEAKS[kind]

    shown = mask(terminal_safe(before + "\n" + line + gap + after))

    assert secret not in shown


def _masked_without_the_gate(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    with monkeypatch.context() as patched:
        patched.setattr(masking, "_GATED_CHARS", -1)  # every text takes the full scan
        return mask_secrets(text)


@_SETTINGS
@given(_TEXT | st.text(max_size=80), st.sampled_from(["", "K", "\u0130", "\u017f", "\u212a"]))
def test_the_quick_no_secret_check_never_changes_what_is_masked(text: str, odd_case: str) -> None:
    # Kelvin sign, dotted I and long s lower to other lengths or letters: the check must still agree.
    text = odd_case + text
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert mask_secrets(text) == _masked_without_the_gate(text, monkeypatch)


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_every_leak_sample_passes_the_quick_check_in_any_case(kind: str) -> None:
    line, _, expected = LEAKS[kind]
    for shown in (line, line.upper(), line.lower(), "\u0130" + line):
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert mask_secrets(shown) == _masked_without_the_gate(shown, monkeypatch)
    assert mask(line) == expected
