"""Terminal-safe text: nothing a terminal would execute survives, and lines stay where they were."""

from __future__ import annotations

import pytest

from mcp_ci_tools.domain.terminal import terminal_safe


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mFAILED\x1b[0m test_pay", "FAILED test_pay"),
        ("\x1b[1;38;5;196mbold red\x1b[m", "bold red"),
        ("see \x1b]8;;https://evil.example/\x07the docs\x1b]8;;\x07 now", "see the docs now"),
        ("\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07copied", "copied"),
        ("\x1b]0;window title\x07text", "text"),
        ("\x1b[2J\x1b[Hclean", "clean"),
        ("up\x1b[10A\x1b[2Kdown", "updown"),
        ("\x9b31mC1 CSI\x9b0m", "C1 CSI"),
        ("\x9d8;;https://evil\x9clink", "link"),
        ("\x1bP1$qm\x1b\\dcs", "dcs"),
        ("\x1b_apc payload\x1b\\apc", "apc"),
        ("\x1bcreset", "reset"),
        ("\x1b(Bcharset", "charset"),
        ("bell\x07", "bell␇"),
        ("lone escape \x1b", "lone escape ␛"),
        ("nul\x00 bs\x08 vt\x0b ff\x0c del\x7f", "nul␀ bs␈ vt␋ ff␌ del␡"),
        ("c1 \x85 \x9c", "c1 <U+0085> <U+009C>"),
        ("user\u202egnp.exe", "user<U+202E>gnp.exe"),
        ("\u2066isolate\u2069 \u200f", "<U+2066>isolate<U+2069> <U+200F>"),
        ("a\u2028b", "a<U+2028>b"),
        ("line one\r\nline two\r\n", "line one\nline two\n"),
        ("10%\r50%\r100%", "10%␍50%␍100%"),
        ("tabs\tstay\nand newlines", "tabs\tstay\nand newlines"),
        ("\x1b\x1b[31m[31m", "␛[31m"),
        ("ünïcödé ✓ 日本", "ünïcödé ✓ 日本"),
    ],
)
def test_escapes_are_removed_and_other_controls_shown(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


def test_an_unterminated_osc_ends_at_its_line_so_line_numbers_survive() -> None:
    raw = "1 \x1b]8;;https://evil.example/ never closed\n2 next\n3 \x1b[31\n4 last"

    safe = terminal_safe(raw)

    assert safe == "1 \n2 next\n3 \n4 last"
    assert safe.count("\n") == raw.count("\n")


def test_terminal_safe_text_is_left_as_it_is() -> None:
    raw = "\x1b[31mred\x07\x9b\u202e\r\x00\n"

    once = terminal_safe(raw)

    assert terminal_safe(once) == once
    assert terminal_safe("plain text\n") == "plain text\n"
