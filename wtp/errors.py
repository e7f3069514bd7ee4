"""Input errors: light to import, so the CLI can catch them without loading pandas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file."""

    file: str
    row: int | None
    column: str | None
    expected: str
    found: object = None

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        text = ", ".join(where) + f": expected {self.expected}"
        if self.found is not None:
            text += f", found {_show(self.found)}"
        return text


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "an empty cell"
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text)


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

    def message(self) -> str:
        if not self.problems:
            return "bad input"
        lines = [str(p) for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            lines.append(f"... and {len(self.problems) - MAX_PROBLEMS} more problems")
        return "\n".join(lines)
