"""grep: user patterns are matched under a time bound, and mean exactly what Python's re makes of them."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_ci_tools.domain.logtext import (
    GREP_LINE_TIME_LIMIT,
    GREP_TIME_LIMIT,
    InvalidPattern,
    PatternTooSlow,
    _is_line_safe,
    _split_lines,
    compile_pattern,
    grep,
    tail,
)
from tests.leak_samples import GHP

HOSTILE_LINE = "a" * 50 + "!"


@pytest.mark.parametrize("pattern", [r"(a|a)*$", r"(a|aa)+$", r"(?:a|a|a)+$"])
def test_a_catastrophic_pattern_is_refused_once_one_line_takes_longer_than_the_line_limit(
    pattern: str,
) -> None:
    log = "ok\n" + HOSTILE_LINE + "\nnever searched\n"
    started = time.monotonic()

    with pytest.raises(PatternTooSlow) as raised:
        grep(log, pattern, max_bytes=1_000, time_limit=5, line_time_limit=0.2)

    assert time.monotonic() - started < 2.5  # unbounded, it would run for hours
    assert raised.value.line_number == 2
    assert str(raised.value).startswith(f"grep pattern {pattern!r} took longer than 0.2 s to match line 2")


def test_the_default_bounds_refuse_a_pattern_quickly_and_bound_the_whole_search() -> None:
    assert 0 < GREP_LINE_TIME_LIMIT <= 0.25 < GREP_TIME_LIMIT <= 3.0


def test_a_slow_pattern_stops_at_the_whole_search_bound_with_the_lines_it_searched() -> None:
    log = "\n".join(["a" * 16 + "!"] * 200)  # each line takes some 30 ms, far below the line limit
    started = time.monotonic()

    result = grep(log, r"(a|a)*$", max_bytes=1_000, time_limit=0.3, line_time_limit=0.25)

    assert time.monotonic() - started < 2.0
    assert result.search_complete is False and 0 < result.searched_lines < 200


def test_a_search_that_runs_out_of_time_between_lines_stops_there_and_says_so() -> None:
    ticks = iter(range(100))
    log = "\n".join(f"line {n} match" for n in range(50))

    result = grep(log, "match", context=0, max_bytes=10_000, time_limit=10, clock=lambda: float(next(ticks)))

    assert result.search_complete is False
    assert result.searched_lines == result.match_count == 9
    assert result.text.split("\n")[-1] == "9:line 8 match"


ORDINARY_PATTERNS = [
    r"ERROR|FAILED",
    r"^\s+at ",
    r"\bfoo\b",
    r"(?i)timeout",
    r"\d{3,}",
    r"exit code [1-9]\d*",
    r"(?P<n>\w+)=(?P=n)",
    r"a.*?b",
    r"(?<=x)y",
    r"(?<!x)y",
    r"ab\Z",
    r"[^\x00-\x7f]",
    r"(?x) a b  # comment",
    r"a{,3}",
    r"a{,}",
    r"{id}",
    r"a{e<=1}",
    r"x{2,3}y{z",
    r"[]{]",
    r"\$\{[^}]+\}",
    r"(?i)ß",
    r"(?a)\w+",
    r"a++",
    r"(?>a+)b",
    r"",
]
LINES = [
    "ERROR: exit code 12 at foo",
    "   at com.example.Foo",
    "foo=foo bar-12 ABC-123 x",
    "timeout après 30s ß SS",
    "xy ay aaab a{e<=1} {id}",
    "${HOME} ]{",
    "xxy{z",
    "",
]


@pytest.mark.parametrize("pattern", ORDINARY_PATTERNS)
def test_a_valid_pattern_finds_exactly_what_python_re_finds(pattern: str) -> None:
    ours = compile_pattern(pattern)
    stdlib = re.compile(pattern)

    for line in LINES:
        expected = stdlib.search(line)
        found = ours.search(line)
        assert (found.span() if found else None) == (expected.span() if expected else None), line


@pytest.mark.parametrize("pattern", [r"[[:alpha:]]", r"[a--b]", r"[a&&b]"])
def test_a_set_that_the_regex_package_would_read_differently_is_refused(pattern: str) -> None:
    with pytest.raises(InvalidPattern, match="ambiguous set"):
        compile_pattern(pattern)


def test_grep_sees_terminal_safe_text_so_a_colour_split_secret_is_masked_and_lines_stay_true() -> None:
    log = f"step 1\n\x1b[31mpush with {GHP[:6]}\x1b[0m{GHP[6:]}\x1b[0m\n\x1b]8;;https://evil/\x07docs\x1b]8;;\x07\ndone"

    found = grep(log, "push|docs", context=0, max_bytes=1_000)
    tailed = tail(log, tail_lines=10, max_bytes=1_000)

    assert found.text == "2:push with [MASKED:github-pat]\n3:docs"
    assert tailed.text == "step 1\npush with [MASKED:github-pat]\ndocs\ndone"
    assert (tailed.first_line, tailed.masked_secrets, found.masked_secrets) == (1, 1, 1)
    assert GHP[6:] not in found.text + tailed.text


def test_a_pattern_cannot_match_an_escape_sequence_because_none_is_left() -> None:
    assert grep("\x1b[31mred\x1b[0m\x07", r"\x1b|\x07", max_bytes=100).match_count == 0
    assert grep("\x1b[31mred\x1b[0m\x07", "red␇", max_bytes=100).text == "1:red␇"


@pytest.mark.parametrize(
    ("pattern", "safe"),
    [
        ("ERROR|FAILED", True),
        (r"^\s*at \w+", False),
        (r"^ +at \w+$", True),
        (r"[^x]", False),
        (r"[a-z\d]+", True),
        (r"(?s)a.b", False),
        (r"(?s:.)", False),
        (r"a\Z", False),
        (r"\Aa", False),
        (r"(?<=x)y(?!z)", True),
        (r"\D", False),
        (r"(\w+)=\1", True),
    ],
)
def test_only_a_pattern_that_cannot_match_a_newline_is_searched_many_lines_at_once(
    pattern: str, safe: bool
) -> None:
    assert _is_line_safe(pattern) is safe


_LINE_PIECES = st.sampled_from(["a", "b", "x", "y", " ", "=", "-", "ERROR", "at", "é", "1", "", "\t"])
_LINES = st.lists(st.lists(_LINE_PIECES, max_size=8).map("".join), max_size=30)
_SAFE_PATTERNS = [p for p in ORDINARY_PATTERNS if _is_line_safe(p)] + [
    r"^$",
    r"^",
    r"$",
    r"\bat\b",
    r"a|^b",
    r"x$",
]


@settings(max_examples=200, deadline=None)
@given(_LINES, st.sampled_from(_SAFE_PATTERNS), st.booleans())
def test_searching_many_lines_at_once_finds_exactly_the_lines_one_by_one_finds(
    lines: list[str], pattern: str, final_newline: bool
) -> None:
    log = "\n".join(lines) + ("\n" if final_newline and lines else "")
    stdlib = re.compile(pattern)
    expected = [n for n, line in enumerate(_split_lines(log)) if stdlib.search(line)]

    result = grep(log, pattern, context=0, max_bytes=100_000)

    assert result.search_complete and result.match_count == len(expected)
    shown = [int(line.split(":", 1)[0]) - 1 for line in result.text.split("\n") if line and line != "--"]
    assert shown == expected
