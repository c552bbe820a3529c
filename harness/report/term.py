"""The one table style of every command's terminal output.

``bench``, ``report``, ``emulate``, ``devices``, ``compare`` and ``recommend`` print their tables
through :func:`table`: headers (units in them) over a dashed rule, columns two spaces apart,
numbers right-aligned, a missing figure shown as ``-``. A table wider than the
terminal is fitted to it: headers wrap onto two lines, then the columns a command ranks lowest
are hidden, with a line naming them, and the case column wraps at its separators instead of
widening the table. Files (report.md, ``--format markdown``) stay GitHub Markdown.
"""

from __future__ import annotations

import math
import re
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MISSING = "-"
_SEP = "  "
# Break points of names (case ids, file names, reasons): after a separator between the parts
# of a case id or words; inside a part (int8-static, digits_cnn) only when the part alone is
# too long; inside a word only when nothing else is left.
_BREAKS = (re.compile(r"(?<=[/@ ])"), re.compile(r"(?<=[_.,;:-])"))


@dataclass(frozen=True)
class Column:
    """One column of a terminal table.

    When the table is too wide, columns are given up highest ``priority`` first (the rightmost
    among equals): a column is hidden, except a ``wrap`` column (a case id, a reason), which is
    never hidden but from then on may break its cells over several lines, down to
    ``min_width``. Priority 0: never hidden, and a wrap column wraps only as the last resort.
    """

    header: str
    align: str = "left"            # "left" or "right" (numbers)
    priority: int = 0
    wrap: bool = False
    min_width: int = 16

    def __post_init__(self) -> None:
        if self.align not in ("left", "right"):
            raise ValueError(f"align must be 'left' or 'right', got {self.align!r}")


@dataclass(frozen=True)
class Heading:
    """A line between a table's rows that names the group of rows below it (a device), so
    that value need not take a column on every row."""

    text: str


def terminal_width(width: int | None = None) -> int:
    """``width``, else the terminal's (``COLUMNS`` first), 120 when there is no terminal."""
    return width or shutil.get_terminal_size(fallback=(120, 24)).columns


def sig(value: float | None, digits: int = 3) -> str | None:
    """``value`` with ``digits`` significant digits (``0.0732``, ``12.3``, ``1,234``); None
    for a missing figure. Measurements and predictions are shown this way: a prediction's
    error is ~20% and a host timing's run-to-run noise a few %, so more digits say nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def fixed(value: float | None, decimals: int, *, sign: bool = False) -> str | None:
    """``value`` with ``decimals`` decimals (quality metrics and their deltas, whose small
    differences matter); None for a missing figure."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken after separators so a case id keeps its
    parts (``/``, ``@`` and spaces first, then ``_ - .``); a part longer than ``width`` is cut."""
    def parts(piece: str, level: int) -> list[str]:
        if len(piece) <= width:
            return [piece]
        if level == len(_BREAKS):
            return [piece[i:i + width] for i in range(0, len(piece), width)]
        return [q for p in _BREAKS[level].split(piece) if p for q in parts(p, level + 1)]

    lines: list[str] = []
    line = ""
    for part in parts(text, 0):
        if line and len((line + part).rstrip()) > width:
            lines.append(line.rstrip())
            line = part.lstrip()
        else:
            line += part
    lines.append(line.rstrip())
    return lines


# A name from a model or a file may hold a newline or an escape sequence: on a terminal it
# would break the row or move the cursor, so every control character becomes a space.
_CONTROL = {c: " " for c in [*range(32), 127]}


def _clean(text: str) -> str:
    return text.translate(_CONTROL)


def _header_width(header: str) -> int:
    """The narrowest width that puts ``header`` on at most two lines."""
    longest = max((len(w) for w in header.split()), default=0)
    w = max(longest, math.ceil(len(header) / 2))
    while len(textwrap.wrap(header, w)) > 2:
        w += 1
    return w


def table(columns: Sequence[Column], rows: Iterable[Sequence[str | None] | Heading], *,
          width: int | None = None, wide: bool = False,
          hint: str = "--wide shows them") -> str:
    """``rows`` (cells already formatted; None is a missing figure) as a terminal table fitted
    to ``width`` (default: the terminal's), or at full width when ``wide``.

    Hidden columns are named on a line under the table, with ``hint`` (how to see them).
    """
    width = terminal_width(width)
    rows = list(rows)
    cells = [[MISSING if c is None else _clean(str(c)) for c in r] for r in rows
             if not isinstance(r, Heading)]
    for r in cells:
        if len(r) != len(columns):
            raise ValueError(f"a row has {len(r)} cells for {len(columns)} columns")
    natural = [max([len(col.header), *(len(r[i]) for r in cells)])
               for i, col in enumerate(columns)]
    least = [min(natural[i], max(col.min_width, _header_width(col.header))) if col.wrap
             else max([_header_width(col.header), *(len(r[i]) for r in cells)])
             for i, col in enumerate(columns)]
    # Until its turn to wrap comes, a wrap column counts at the width that leaves at most one
    # cell in ten wrapped: one long case id among many does not hide a column.
    typical = [sorted(len(r[i]) for r in cells)[len(cells) - 1 - len(cells) // 10]
               if cells and col.wrap else natural[i] for i, col in enumerate(columns)]
    typical = [max(t, least[i]) for i, t in enumerate(typical)]
    shown = list(range(len(columns)))
    widths = dict(enumerate(natural))
    hidden: list[int] = []
    if not wide:
        wrapped: set[int] = set()        # wrap columns allowed down to their least width

        def need() -> int:
            return (sum(least[i] if i in wrapped or not columns[i].wrap else typical[i]
                        for i in shown) + len(_SEP) * (len(shown) - 1))

        # Headers go on two lines first (least widths); then, highest priority first, a
        # column is hidden or, for a wrap column, allowed to wrap.
        while need() > width:
            candidates = [i for i in shown if (columns[i].wrap and i not in wrapped)
                          or (not columns[i].wrap and columns[i].priority > 0)]
            if not candidates:
                break
            victim = max(candidates, key=lambda i: (columns[i].priority, i))
            if columns[victim].wrap:
                wrapped.add(victim)
            else:
                shown.remove(victim)
                hidden.append(victim)
        # Nothing left to give up: wrap columns narrower than their min_width, to 8 at least,
        # in the order they were given up.
        for i in sorted(shown, key=lambda i: (-columns[i].priority, -i)):
            if columns[i].wrap and need() > width:
                wrapped.add(i)
                least[i] = max(min(least[i], 8), least[i] - (need() - width))
        widths = {i: least[i] if i in wrapped or not columns[i].wrap else typical[i]
                  for i in shown}
        slack = width - need()
        # Space left goes first to wrapped columns, a column at a time in turn (a case id on
        # one line reads best), then to headers, left to right, so they go back on one line.
        growing = [i for i in shown if columns[i].wrap]
        while slack > 0 and growing:
            for i in list(growing):
                if slack > 0 and widths[i] < natural[i]:
                    widths[i] += 1
                    slack -= 1
                else:
                    growing.remove(i)
        for i in shown:
            if not columns[i].wrap and 0 < natural[i] - widths[i] <= slack:
                slack -= natural[i] - widths[i]
                widths[i] = natural[i]
    body = iter(cells)
    out = _render([columns[i] for i in shown],
                  [r if isinstance(r, Heading) else [c for i, c in enumerate(next(body))
                                                     if i in shown] for r in rows],
                  [widths[i] for i in shown])
    if hidden:
        names = ", ".join(columns[i].header for i in sorted(hidden))
        out += "\n" + textwrap.fill(f"(hidden to fit {width} columns: {names}; {hint})", width)
    return out


def _render(columns: list[Column], rows: list[list[str] | Heading], widths: list[int]
            ) -> str:
    def block(texts: list[str], *, header: bool) -> list[str]:
        parts = []
        for col, text, w in zip(columns, texts, widths, strict=True):
            if header:
                parts.append(textwrap.wrap(text, w, break_long_words=False) or [""])
            else:
                parts.append(wrap(text, w) if col.wrap and len(text) > w else [text])
        height = max(len(p) for p in parts)
        # headers sit on the rule (bottom-aligned); cells start on the row's first line
        parts = [([""] * (height - len(p)) + p) if header else (p + [""] * (height - len(p)))
                 for p in parts]
        return [_SEP.join(line.rjust(w) if col.align == "right" else line.ljust(w)
                          for col, line, w in zip(columns, lines, widths, strict=True)).rstrip()
                for lines in zip(*parts, strict=True)]

    lines = block([c.header for c in columns], header=True)
    lines.append(_SEP.join("-" * w for w in widths))
    for n, r in enumerate(rows):
        if isinstance(r, Heading):   # a blank line before every group but the first
            lines += ([""] if n else []) + textwrap.wrap(
                _clean(r.text), sum(widths) + len(_SEP) * (len(widths) - 1))
        else:
            lines += block(r, header=False)
    return "\n".join(lines)
