"""One results table: rows of medians with their spread, ratios to a reference, and target verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.stats import Summary

__all__ = [
    "Row",
    "Section",
    "Unit",
    "Verdict",
    "fmt_bytes",
    "fmt_mib",
    "fmt_ms",
    "fmt_rate",
    "render_markdown",
    "render_text",
]

COLUMNS = ("", "measurement", "median", "spread (p10-p90)", "n", "vs", "Δ", "ratio", "target", "")


class Unit:
    """Formats a number with its unit (`fmt(x)`) or without (`fmt.bare(x)`, for spreads)."""

    def __init__(self, suffix: str, digits: Callable[[float], int]) -> None:
        self.suffix = suffix
        self.digits = digits

    def bare(self, value: float) -> str:
        return f"{value:,.{self.digits(value)}f}"

    def __call__(self, value: float) -> str:
        return f"{self.bare(value)} {self.suffix}"


fmt_ms = Unit("ms", lambda v: 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0)
fmt_mib = Unit("MiB", lambda v: 1)
fmt_bytes = Unit("B", lambda v: 0)
fmt_rate = Unit("calls/s", lambda v: 0)


@dataclass(frozen=True)
class Verdict:
    """A target checked against a measurement: its wording and whether it holds."""

    text: str
    held: bool | None  # None: could not be checked (a part was skipped)
    measured: str = ""  # what was compared with the target, when the row's median is not it

    @property
    def word(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.held]


@dataclass
class Row:
    label: str
    median: str = ""
    spread: str = ""
    n: str = ""
    vs: str = ""
    delta: str = ""
    ratio: str = ""
    verdict: Verdict | None = None

    @classmethod
    def of(
        cls,
        label: str,
        summary: Summary,
        fmt: Unit,
        *,
        spread: str = "p10-p90",
        ref: Summary | None = None,
        vs: str = "",
        delta: bool = True,
        verdict: Verdict | None = None,
    ) -> Row:
        """A row for `summary`, with its difference and ratio to `ref` (medians) when given."""
        if spread == "p10-p90":
            shown = f"{fmt.bare(summary.p10)}-{fmt.bare(summary.p90)}"
        elif spread == "min-max":
            shown = f"{fmt.bare(summary.min)}-{fmt.bare(summary.max)} min-max"
        else:
            shown = ""
        row = cls(label=label, median=fmt(summary.median), spread=shown, n=str(summary.n), verdict=verdict)
        if ref is not None:
            row.vs = vs
            if delta:
                difference = summary.median - ref.median
                row.delta = ("+" if difference >= 0 else "-") + fmt(abs(difference))
            row.ratio = f"{summary.median / ref.median:.2f}x" if ref.median else ""
        return row


@dataclass
class Section:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)


def _cells(row: Row) -> list[str]:
    target = row.verdict.text if row.verdict else ""
    word = row.verdict.word if row.verdict else ""
    return [row.label, row.median, row.spread, row.n, row.vs, row.delta, row.ratio, target, word]


def render_text(sections: Sequence[Section]) -> str:
    """The table as aligned plain text, one block per section, its notes below it."""
    body: list[list[str] | str] = []
    for section in sections:
        body.append(f"{section.number}. {section.title}  ({section.seconds:.0f} s)")
        body.extend(["  " + cells[0], *cells[1:]] for cells in map(_cells, section.rows))
        body.extend(f"   note: {text}" for text in section.notes)
    header = list(COLUMNS[1:])
    widths = [len(h) for h in header]
    for line in body:
        if isinstance(line, list):
            widths = [max(w, len(cell)) for w, cell in zip(widths, line, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(cells[1:7], widths[1:7], strict=True)]
        parts += [cells[7].ljust(widths[7]), cells[8]]
        return "  ".join(parts).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [fmt(header), rule]
    for line in body:
        if isinstance(line, str):
            out.append(line if line.startswith("   ") else f"\n{line}")
        else:
            out.append(fmt(line))
    return "\n".join(out)


def render_markdown(sections: Sequence[Section]) -> str:
    """The table as GitHub markdown: a header row per section, notes as a list below the table."""
    out = [
        "| " + " | ".join(COLUMNS[1:]) + " |",
        "|" + "|".join(["---"] + ["--:"] * 6 + ["---", "---"]) + "|",
    ]
    notes: list[str] = []
    for section in sections:
        out.append(f"| **{section.number}. {section.title}** |" + " |" * 8)
        for row in section.rows:
            cells = [cell.replace("|", "\\|") for cell in _cells(row)]
            if row.verdict is not None:
                cells[8] = f"**{cells[8]}**"
            out.append("| " + " | ".join(cells) + " |")
        notes.extend(f"- ({section.number}) {text}" for text in section.notes)
    if notes:
        out += ["", "Notes:", "", *notes]
    return "\n".join(out)
