"""Input errors: light to import, so the CLI can catch them without loading pandas.

How problems are counted (the analyst sees the true size of what is wrong, never a guess):

* one :class:`Problem` is one message line; a problem that affects many rows of one column
  (``count`` > 1) is one line with its exact count and the first few rows as examples;
* :meth:`InputError.message` lists at most :data:`MAX_PROBLEMS` lines and then says how many
  lines and how many problems (the sum of the counts) are left, so the total is always exact.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_PROBLEMS = 20
# rows shown as examples in a line that stands for many rows
MAX_EXAMPLES = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, or the same thing wrong in ``count`` rows of a column.

    ``row`` is the first row it happens in; ``examples`` holds ``(row, found)`` pairs (or
    ``(row,)`` when there is no value to show) for a problem that stands for several rows.
    """

    file: str
    row: int | None
    column: str | None
    expected: str
    found: object = None
    count: int = 1
    examples: tuple = ()

    def __str__(self) -> str:
        where = [self.file]
        if self.count > 1:
            where.append(f"{self.count:,} rows")
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        text = ", ".join(where) + f": expected {self.expected}"
        if self.count > 1 and self.examples:
            shown = self.examples[:MAX_EXAMPLES]
            more = ", ..." if self.count > len(shown) else ""
            if all(len(e) == 1 for e in shown):
                text += " (rows " + ", ".join(str(e[0]) for e in shown) + more + ")"
            else:
                text += (
                    ", found e.g. " + "; ".join(f"row {e[0]}: {_show(e[1])}" for e in shown) + more
                )
        elif self.found is not None:
            text += f", found {_show(self.found)}"
        return text


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "an empty cell"
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text)


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The closest of ``candidates`` to ``word``, compared case-, space- and ``_``/``-``-blind."""
    cands = [str(c) for c in candidates]
    keyed = {}
    for c in cands:
        keyed.setdefault(_loose(c), c)
    target = _loose(word)
    hits = difflib.get_close_matches(target, list(keyed), n=n, cutoff=0.6)
    if not hits:
        # short names with two letters swapped ('wv' for 'vw') score low on similarity
        hits = [k for k in keyed if sorted(k) == sorted(target)][:n]
    return [keyed[h] for h in hits]


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    hits = did_you_mean(word, candidates, n=2)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(repr(h) for h in hits) + "?)"


def _loose(text: str) -> str:
    return " ".join(str(text).replace("_", " ").replace("-", " ").casefold().split())


class InputError(ValueError):
    """Bad input: carries every :class:`Problem` found (file, row, column, expected)."""

    def __init__(self, problems: Iterable[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(file="input", row=None, column=None, expected=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self.message())

    @property
    def file(self) -> str | None:
        return self.problems[0].file if self.problems else None

    @property
    def row(self) -> int | None:
        return self.problems[0].row if self.problems else None

    @property
    def column(self) -> str | None:
        return self.problems[0].column if self.problems else None

    @property
    def total(self) -> int:
        """The exact number of problems (a line that stands for many rows counts each)."""
        return sum(p.count for p in self.problems)

    def message(self) -> str:
        if not self.problems:
            return "bad input"
        lines = [str(p) for p in self.problems[:MAX_PROBLEMS]]
        rest: Sequence[Problem] = self.problems[MAX_PROBLEMS:]
        if rest:
            lines.append(
                f"... and {len(rest):,} more lines ({sum(p.count for p in rest):,} problems); "
                f"{self.total:,} problems in all"
            )
        elif self.total > 1:
            lines.append(f"{self.total:,} problems in all")
        return "\n".join(lines)


class OutputError(OSError):
    """The environment refuses the results folder (permissions, a full disk, another run holds
    it): one line on the terminal and exit 1, unlike bad input (exit 2)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.text = message

    def __str__(self) -> str:
        return self.text


_CONTROL = {
    c: f"\\x{c:02x}"
    for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    if c not in (0x0A, 0x09)
}
# bidirectional overrides reorder what a terminal shows; they are escaped like control characters
_CONTROL.update(
    {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]}
)


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (escape sequences, NUL, carriage returns,
    bidirectional overrides) from data are shown as ``\\x1b`` etc., line breaks and tabs kept."""
    return str(text).translate(_CONTROL)
