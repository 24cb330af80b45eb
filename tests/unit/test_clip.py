"""clip: CI-written fields are terminal-safe and masked, and a long one is cut without showing part of a secret."""

from __future__ import annotations

import pytest

from mcp_ci_tools.tools._views import clip
from tests.leak_samples import GHP


def test_a_short_field_is_terminal_safe_masked_and_cut_with_an_ellipsis() -> None:
    assert clip(f"\x1b[31mboom {GHP}\x1b[0m\x07", 300) == "boom [MASKED:github-pat]␇"
    assert clip("x" * 400, 300) == "x" * 299 + "…"


@pytest.mark.parametrize("offset", range(-38, 0, 3))
def test_a_secret_cut_where_a_long_field_is_cut_for_masking_never_shows(offset: int) -> None:
    # Only limit + 2048 raw characters are masked. A long bearer value masks to a short tag, so the shown
    # text reaches that cut, and a token placed across it is too short there to be recognised.
    limit = 300
    start = limit + 2_048 + offset
    text = "Bearer " + "A" * (start - 8) + " " + GHP + " tail" * 1_000

    shown = clip(text, limit)

    assert shown is not None and shown.startswith("Bearer [MASKED:bearer]")
    assert "ghp_" not in shown and GHP[4:12] not in shown


def test_a_long_field_that_is_one_word_shows_no_part_of_its_end() -> None:
    text = "y" * 500_000

    assert clip(text, 300) == "…"
