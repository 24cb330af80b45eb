"""`logtext.page`: pages of the raw log by byte offset, masked so that joined they are the masked whole log."""

from __future__ import annotations

import random

import pytest

from mcp_ci_tools.domain import logtext
from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.terminal import terminal_safe

GHP = "ghp_" + "Ab3" * 12
PASSWORD = "hunter2-very-secret"
KEY_BODY = ["MIIEowIBAAKCAQEA" + "q" * 48 for _ in range(12)]
KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_BODY) + "\n-----END RSA PRIVATE KEY-----\n"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "s" * 3_000
LOG = (
    "".join(f"step {i}: export DB_PASSWORD={PASSWORD}{i} and {GHP} é→ü\n" for i in range(150))
    + KEY
    + "x" * 3_000
    + f" Authorization: Bearer {JWT} done\n"
    + "\x1b[31mred\x1b[0m progress\r50%\rdone\r\n"
    + "last line without newline ib_mcp_"
    + "0123456789abcdef" * 3
)
SECRETS = [PASSWORD, GHP, KEY_BODY[3], JWT[60:120], "0123456789abcdef" * 3]


def read_all(text: str, max_bytes: int, start: int = 0) -> list[logtext.LogPage]:
    pages = []
    offset = start
    while True:
        got = logtext.page(text, byte_offset=offset, max_bytes=max_bytes)
        pages.append(got)
        if got.end >= got.total_bytes:
            return pages
        assert got.end > offset  # every page makes progress
        offset = got.end


@pytest.mark.parametrize("max_bytes", [1_000, 1_024, 1_500, 4_096, 16_000, 100_000])
def test_pages_joined_are_the_masked_whole_log_byte_for_byte(max_bytes: int) -> None:
    pages = read_all(LOG, max_bytes)

    assert "".join(p.text for p in pages) == mask(terminal_safe(LOG))
    assert [p.start for p in pages[1:]] == [p.end for p in pages[:-1]]  # contiguous, no gap, no overlap
    assert pages[0].start == 0 and pages[-1].end == len(LOG.encode()) == pages[0].total_bytes
    for got in pages:
        assert got.returned_bytes == len(got.text.encode()) <= max_bytes
        assert not any(secret in got.text for secret in SECRETS)
        assert not got.moved_back and not got.skipped


def test_a_secret_split_by_the_page_edge_is_masked_and_the_edge_moves_before_it() -> None:
    head = "a" * 980 + " password="  # the 1000-byte edge falls inside the password's value
    text = f"{head}{PASSWORD}{PASSWORD} tail\nnext line\n"

    first = logtext.page(text, byte_offset=0, max_bytes=1_000)
    second = logtext.page(text, byte_offset=first.end, max_bytes=1_000)

    assert first.end <= len(head) - len(" password=")  # cut before the name, not inside the value
    assert PASSWORD[:5] not in first.text + second.text
    assert first.text + second.text == mask(terminal_safe(text))


def test_a_page_edge_inside_a_private_key_masks_both_sides() -> None:
    text = "start\n" + KEY + KEY + "end\n"
    pages = read_all(text, 1_000)

    assert len(pages) == 2 and text.rindex("-----BEGIN") < pages[0].end < text.rindex("-----END")  # in a key
    assert "MIIE" not in pages[0].text + pages[1].text
    assert pages[1].text.startswith("[MASKED:private-key]")  # begins inside the key: still masked
    assert "".join(p.text for p in pages) == mask(text)


def test_an_offset_inside_a_line_where_a_cut_is_unsafe_moves_back_to_the_line_start() -> None:
    text = f"first line\nsecond password={PASSWORD} end\n"
    inside = text.encode().index(PASSWORD.encode()) + 4

    got = logtext.page(text, byte_offset=inside, max_bytes=1_000)

    assert got.moved_back and got.start == len("first line\n")
    assert got.text == "second password=[MASKED:secret-assignment] end\n"


def test_a_safe_offset_inside_a_line_is_kept() -> None:
    text = "0123456789 plain words only here\n"

    got = logtext.page(text, byte_offset=11, max_bytes=1_000)

    assert (got.start, got.moved_back, got.text) == (11, False, "plain words only here\n")


def test_an_offset_inside_a_utf8_character_moves_to_its_first_byte() -> None:
    text = "ab\né→ü\n"
    got = logtext.page(text, byte_offset=4, max_bytes=1_000)  # the second byte of é

    assert got.start == 3 and got.text == "é→ü\n"


@pytest.mark.parametrize(("offset", "base"), [(-1, 0), (len(LOG.encode()) + 1, 0), (99, 100)])
def test_offsets_outside_the_log_are_refused(offset: int, base: int) -> None:
    with pytest.raises(logtext.OffsetOutOfRange) as refused:
        logtext.page(LOG, byte_offset=offset, max_bytes=1_000, base=base)

    assert (refused.value.first, refused.value.total) == (base, base + len(LOG.encode()))


def test_the_end_of_the_log_is_an_empty_last_page() -> None:
    got = logtext.page("abc\n", byte_offset=4, max_bytes=1_000)

    assert (got.text, got.start, got.end, got.total_bytes) == ("", 4, 4, 4)


def test_offsets_count_from_base_when_the_server_sent_only_the_end() -> None:
    got = logtext.page("tail line\n", byte_offset=5_000, max_bytes=1_000, base=5_000)

    assert (got.start, got.end, got.total_bytes, got.text) == (5_000, 5_010, 5_010, "tail line\n")


def test_page_before_is_the_start_of_whole_lines_within_max_bytes_before_the_end() -> None:
    data = LOG.encode()
    ends = [p.start for p in read_all(LOG, 2_000)[1:]]
    for end in ends:
        before = logtext.page_before(LOG, end=end, max_bytes=2_000)
        assert before is not None and end - 2_000 <= before < end
        assert before == 0 or data[before - 1 : before] == b"\n" or b"\n" not in data[before : end - 1]
    assert logtext.page_before(LOG, end=0, max_bytes=2_000) is None
    assert logtext.page_before(LOG, end=1_500, max_bytes=2_000) == 0


def test_a_secret_longer_than_the_page_is_masked_whole_on_one_page() -> None:
    text = "a b c " + JWT + " tail\nnext\n"  # no cut inside the 3 kB token is safe; after it, one is

    pages = read_all(text, 1_000)

    assert "".join(p.text for p in pages) == mask(terminal_safe(text))
    assert any("[MASKED:jwt]" in p.text for p in pages) and not any("sssss" in p.text for p in pages)


def test_an_over_long_line_with_no_safe_cut_is_skipped_and_said() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "s" * 40_000  # longer than any cut check
    text = token + "\nnext\n"

    first = logtext.page(text, byte_offset=0, max_bytes=1_000)
    second = logtext.page(text, byte_offset=first.end, max_bytes=1_000)

    assert first.skipped == len(token) + 1 and "left out" in first.text and first.text.endswith("\n")
    assert "sssss" not in first.text
    assert second.text == "next\n"


def test_random_logs_reassemble_exactly() -> None:
    rng = random.Random(17)
    pieces = [
        "plain text ",
        "token=abc123secret ",
        GHP,
        " Bearer xyz.abc ",
        "\x1b[1;32m",
        "\x1b]8;;http://x\x07",
        "\r",
        "\n",
        "é",
        "日本",
        KEY,
        "https://user:pa55word@host/ ",
        "AKIA" + "A" * 16,
    ]
    for _ in range(25):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(50, 400)))
        max_bytes = rng.choice([1_000, 1_300, 2_500])
        pages = read_all(text, max_bytes)
        assert "".join(p.text for p in pages) == mask(terminal_safe(text))
