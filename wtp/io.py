"""Reading and validating the contract's input files.

Every input goes through two steps:

1. :func:`read_table` reads CSV (BOM, ``;`` and decimal commas sniffed), XLSX, Parquet or SPSS
   ``.sav`` (value labels become text) into a raw DataFrame. CSV cells stay text so that
   validation can say exactly which cell is wrong.
2. A ``validate_*`` function checks the columns the contract names, coerces types, and returns a
   clean frame. Every problem found is collected into one :class:`InputError` naming file,
   1-based row as a spreadsheet shows it, column and what was expected; the same problem in many
   rows of a column is one line with its exact count (see :mod:`wtp.errors`).

Clean frames carry a ``row`` column (the source row number) so later stages can still point an
analyst at the line that was left out.
"""

from __future__ import annotations

import csv
import io as _io
import itertools
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from wtp.columns import (
    CONJOINT_NON_ATTRIBUTES,
    RULE_WORDS,
    InputLayout,
    apply_layout,
    missing_columns,
    parse_numbers,
)
from wtp.errors import MAX_EXAMPLES, InputError, Problem, suggestion
from wtp.schema import ALL as RESERVED_SEGMENT
from wtp.schema import is_all, segment_key

MAX_MAGNITUDE = 1e12

__all__ = [
    "InputError",
    "Problem",
    "read_table",
    "validate_vw",
    "validate_maxdiff",
    "validate_conjoint",
    "validate_segments",
    "validate_customers",
    "validate_respondents",
    "attach_segments",
    "MANIFEST",
    "atomic_output_dir",
    "check_output_dir",
    "remember_input",
    "write_csv",
    "neutralise_formulas",
]


# --------------------------------------------------------------------------------------------
# Errors


class _Collector:
    """Collects problems for one file and raises them together."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, row: int | None, column: str | None, expected: str, found: object = None):
        self.problems.append(Problem(self.file, row, column, expected, found))

    def add_rows(self, rows: Iterable[int], column: str | None, expected: str, found=()):
        """The same problem in many rows of one column: one line with its exact count."""
        rows = [int(r) for r in rows]
        if not rows:
            return
        found = list(found)
        if len(rows) <= MAX_EXAMPLES:
            for i, r in enumerate(rows):
                self.add(r, column, expected, found[i] if i < len(found) else None)
            return
        if found:
            examples = tuple(zip(rows[:MAX_EXAMPLES], found[:MAX_EXAMPLES], strict=False))
        else:
            examples = tuple((r,) for r in rows[:MAX_EXAMPLES])
        self.problems.append(
            Problem(self.file, rows[0], column, expected, None, count=len(rows), examples=examples)
        )

    def raise_if_any(self):
        if self.problems:
            raise InputError(self.problems)


# --------------------------------------------------------------------------------------------
# Reading


def _source_name(frame: pd.DataFrame, default: str) -> str:
    return str(frame.attrs.get("source", default))


def _row_offset(frame: pd.DataFrame) -> int:
    # a spreadsheet shows the header as row 1, so the first record is row 2
    return int(frame.attrs.get("row_offset", 2))


def _sniff_csv(sample: str) -> tuple[str, str]:
    """Return (delimiter, decimal) for a CSV sample."""
    first = sample.splitlines()[0] if sample else ""
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: first.count(d) for d in ",;\t|"}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    # the header decides between ',' and ';' more reliably than the sniffer on short files
    if first.count(";") > first.count(",") and delimiter == ",":
        delimiter = ";"
    decimal = "."
    if delimiter != "," and re.search(r"(^|[;\t|])\s*-?\d+,\d+\s*($|[;\t|])", sample, re.M):
        decimal = ","
    return delimiter, decimal


def nearby_file(path: Path) -> str:
    """ " (did you mean 'vw.csv'?)" for a missing file whose folder holds a close name."""
    try:
        names = [p.name for p in Path(path).parent.iterdir() if p.is_file()]
    except OSError:
        return ""
    return suggestion(Path(path).name, names)


def read_table(path: str | os.PathLike, *, name: str | None = None) -> pd.DataFrame:
    """Read one input file into a raw DataFrame.

    CSV cells are read as text (empty cells as missing) so validation can point at the exact
    cell; XLSX, Parquet and SPSS files keep their types, and SPSS value labels become text.
    The frame's ``attrs`` record the source name, row offset and (for CSV) the decimal mark.
    """
    path = Path(path)
    label = name or path.name
    if not path.exists():
        raise InputError(
            Problem(str(path), None, None, "an existing file" + nearby_file(path), "no such file")
        )
    if not path.is_file():
        # a device (/dev/zero), FIFO or folder would be read until memory runs out, or fail oddly
        what = "a folder" if path.is_dir() else "a device, pipe or socket"
        raise InputError(Problem(str(path), None, None, "a regular file", what))
    remember_input(path)
    suffix = path.suffix.lower()
    decimal = "."
    row_offset = 2
    try:
        if suffix in {".csv", ".txt", ".tsv", ""}:
            raw = path.read_bytes()
            text = _decode(raw, label)
            if not text.strip():
                raise InputError(
                    Problem(label, None, None, "a header row and data", "an empty file")
                )
            delimiter, decimal = _sniff_csv(text[:20000])
            title_lines = _title_lines(text, delimiter)
            row_offset += title_lines
            _check_header(text, delimiter, label, title_lines)
            frame = _read_csv_arrow(text, delimiter) if title_lines == 0 else None
            if frame is None:
                frame = _read_csv_text(text, delimiter, title_lines)
        elif suffix in {".xlsx", ".xlsm", ".xls"}:
            frame = pd.read_excel(path)
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif suffix in {".sav", ".zsav"}:
            import pyreadstat

            frame, _meta = pyreadstat.read_sav(str(path), apply_value_formats=True)
        else:
            raise InputError(
                Problem(label, None, None, "a .csv, .xlsx, .parquet or .sav file", path.suffix)
            )
    except InputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            Problem(label, None, None, "a readable table", str(exc).splitlines()[0])
        ) from exc
    except Exception as exc:  # openpyxl, pyarrow and pyreadstat raise their own types
        raise InputError(
            Problem(
                label,
                None,
                None,
                f"a readable {suffix or 'CSV'} file",
                f"{type(exc).__name__}: {exc}",
            )
        ) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if suffix not in {".csv", ".txt", ".tsv", ""}:  # CSV headers were checked as written
        _no_duplicate_columns(frame, label)
    rows = frame.attrs.get("rows")
    frame.attrs.update(source=label, row_offset=row_offset, decimal=decimal, path=str(path))
    if rows is not None:
        frame.attrs["rows"] = rows
    return frame


def _title_lines(text: str, delimiter: str, search: int = 12) -> int:
    """Lines of a title block above a CSV header: the leading lines holding at most one value
    while the lines after them are wider (a survey name, an export date, a blank line)."""
    records = list(
        itertools.islice(csv.reader(_io.StringIO(text[:200000]), delimiter=delimiter), 50)
    )
    widths = [sum(1 for v in r if v.strip()) for r in records]
    if not widths or max(widths) < 2:
        return 0
    n = 0
    while n < min(search, len(records)) and widths[n] <= 1:
        n += 1
    return n if n < len(records) else 0


def _decode(raw: bytes, label: str) -> str:
    """Text of a CSV: UTF-8 (BOM or not), UTF-16 (Excel's "Unicode text", with or without a
    BOM), else Windows-1252, which survey tools on Windows still export."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return (
            raw[3:].decode("utf-8", errors="strict")
            if _utf8(raw[3:])
            else raw[3:].decode("cp1252", errors="replace")
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(
                Problem(
                    label,
                    None,
                    None,
                    "readable UTF-16 text (the file starts like Excel's 'Unicode text')",
                    "bytes that are not UTF-16",
                )
            ) from None
    head = raw[:4000]
    if head.count(b"\x00") > len(head) // 4:
        # UTF-16 without a byte order mark: the zero bytes sit on one side of each character
        encoding = (
            "utf-16-le" if head[1::2].count(b"\x00") > head[0::2].count(b"\x00") else "utf-16-be"
        )
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
        raise InputError(
            Problem(
                label,
                None,
                None,
                "a text table (CSV in UTF-8 or UTF-16)",
                "binary data with zero bytes",
            )
        )
    if b"\x00" in head:
        raise InputError(
            Problem(label, None, None, "a text table (CSV)", "binary data with zero bytes")
        )
    if _utf8(raw):
        return raw.decode("utf-8")
    return raw.decode("cp1252", errors="replace")


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_csv_arrow(text: str, delimiter: str) -> pd.DataFrame | None:
    """The common case, fast: Arrow's CSV reader builds the text columns directly (the C
    parser's Python strings cost seconds per million rows). None when the file has blank lines
    (row numbers must count them), multi-line cells or anything else Arrow reads differently;
    :func:`_read_csv_text` then reads it."""
    if re.search(r"\n[ \t\r]*\n", text.rstrip()) or len(text) < 1_000_000:
        return None
    try:
        frame = pd.read_csv(
            _io.BytesIO(text.encode("utf-8")),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            engine="pyarrow",
        )
    except Exception:  # noqa: BLE001 - any difficulty: the careful reader decides
        return None
    return frame


def _read_csv_text(text: str, delimiter: str, title_lines: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(
        _io.StringIO(text),
        skiprows=title_lines,
        sep=delimiter,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skipinitialspace=True,
        skip_blank_lines=False,
    )
    # blank lines are dropped only now, so row numbers stay those a spreadsheet shows
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        source_rows = np.flatnonzero(~blank) + 2 + title_lines
        frame = frame.loc[~blank].reset_index(drop=True)
        # a tuple, not an array: pandas compares attrs when it combines frames
        frame.attrs["rows"] = tuple(source_rows.tolist())
    return frame


def _check_header(text: str, delimiter: str, label: str, title_lines: int = 0) -> None:
    """Duplicated column names are an error: pandas would silently rename one to ``x.1``."""
    header = (
        text.split("\n", title_lines + 1)[title_lines] if text.count("\n") >= title_lines else ""
    )
    first = next(csv.reader(_io.StringIO(header), delimiter=delimiter, skipinitialspace=True), [])
    names = [c.strip() for c in first]
    seen: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names, start=1):
        if name and name in seen:
            problems.append(
                Problem(
                    label,
                    1 + title_lines,
                    name,
                    f"each column name once (columns {seen[name]} and {i} are both '{name}')",
                )
            )
        seen.setdefault(name, i)
    if problems:
        raise InputError(problems)


def _no_duplicate_columns(frame: pd.DataFrame, label: str) -> None:
    # Excel, Parquet and SPSS readers rename a duplicated header to 'name.1'
    names = list(frame.columns)
    problems = []
    for name in names:
        m = re.fullmatch(r"(.+)\.(\d+)", name)
        if m and m.group(1) in names:
            problems.append(
                Problem(label, 1, m.group(1), "each column name once (it appears more than once)")
            )
    if problems:
        raise InputError(problems)


# --------------------------------------------------------------------------------------------
# Column helpers

# --------------------------------------------------------------------------------------------
# Column helpers


def _require_columns(frame: pd.DataFrame, required: Iterable[str], col: _Collector) -> None:
    col.problems.extend(missing_columns(frame, required, col.file))
    col.raise_if_any()


def _numeric(
    frame: pd.DataFrame,
    column: str,
    col: _Collector,
    *,
    allow_missing: bool = False,
    expected: str = "a number",
    rule: str = "number",
) -> pd.Series:
    """Coerce a column to float under its rule (:func:`wtp.columns.parse_numbers`), reporting
    the cells that break it once per column."""
    values = frame[column]
    rows = _rows(frame)
    bad = pd.Series(False, index=frame.index)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = values.astype(float)
    elif (fast := _arrow_float(values, frame.attrs.get("decimal", "."))) is not None:
        # every cell parsed in one vectorised cast: nothing to report cell by cell. A plain
        # number meets every rule (no currency sign to check, no percent sign to divide out)
        out = pd.Series(fast, index=frame.index)
    else:
        currency = frame.attrs.get("currency") if rule == "money" else None
        out, bad, wrong = parse_numbers(
            values, rule, decimal=frame.attrs.get("decimal", "."), currency=currency
        )
        if bad.any():
            col.add_rows(
                rows[bad.to_numpy()],
                column,
                f"{expected}: {RULE_WORDS[rule]}",
                values[bad].tolist(),
            )
        if wrong.any():
            col.add_rows(
                rows[wrong.to_numpy()],
                column,
                f"{expected} in the study's currency ({currency})",
                values[wrong].tolist(),
            )
            bad = bad | wrong
    out = pd.Series(out.to_numpy(dtype=float), index=frame.index, name=column)
    infinite = ~np.isfinite(out.to_numpy()) & out.notna().to_numpy()
    if infinite.any():
        col.add_rows(rows[infinite], column, expected + " (finite)", values[infinite].tolist())
        out[infinite] = np.nan
    # 1e308 parses as a number but overflows every sum it enters; no price, weight or count is
    # anywhere near this size, so it is a typo or an export error
    huge = (out.abs() > MAX_MAGNITUDE).to_numpy()
    if huge.any():
        col.add_rows(
            rows[huge],
            column,
            f"{expected} of at most {MAX_MAGNITUDE:.0e} in size",
            values[huge].tolist(),
        )
        out[huge] = np.nan
    if not allow_missing:
        missing = out.isna() & ~bad.to_numpy() & ~(infinite | huge)
        if missing.any():
            col.add_rows(rows[missing.to_numpy()], column, expected, [None] * int(missing.sum()))
    return out


def _arrow_float(values: pd.Series, decimal: str) -> np.ndarray | None:
    """All cells of an Arrow-backed text column as floats in one vectorised cast (missing → NaN),
    or None when the column is not Arrow text or some cell is not a number (the caller then
    finds and reports those cells one by one). A million cells: tenths of a second."""
    arr = getattr(values.array, "_pa_array", None)
    if arr is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pc.utf8_trim_whitespace(arr)
        if decimal == ",":
            arr = pc.replace_substring(arr, ",", ".")
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(float, copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _text_bad(values: pd.Series, frame: pd.DataFrame, rule: str = "number") -> pd.Series:
    # cells that held text were already reported; do not report them twice as empty
    if pd.api.types.is_numeric_dtype(values):
        return pd.Series(False, index=values.index)
    if _arrow_float(values, frame.attrs.get("decimal", ".")) is not None:
        return pd.Series(False, index=values.index)
    currency = frame.attrs.get("currency") if rule == "money" else None
    _out, bad, wrong = parse_numbers(
        values, rule, decimal=frame.attrs.get("decimal", "."), currency=currency
    )
    return bad | wrong


def _binary(frame: pd.DataFrame, column: str, col: _Collector, *, allow_missing=False) -> pd.Series:
    values = _numeric(frame, column, col, allow_missing=allow_missing, expected="0 or 1")
    rows = _rows(frame)
    bad = values.notna() & ~values.isin([0.0, 1.0])
    if bad.any():
        col.add_rows(rows[bad.to_numpy()], column, "0 or 1", frame[column][bad].tolist())
    return values


def _key(frame: pd.DataFrame, column: str, col: _Collector) -> pd.Series:
    """An identifier column as clean text (1.0 from Excel becomes '1')."""
    values = frame[column]
    rows = _rows(frame)
    missing = values.isna()
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.round(whole)).all():
            values = values.astype("Int64")
    text = values.astype("string").str.strip()
    missing = missing | (text == "").fillna(True)
    if missing.any():
        col.add_rows(rows[missing.to_numpy()], column, "a value (identifiers cannot be empty)")
    return text.astype(object).where(~missing, None)


def _positive_weight(frame: pd.DataFrame, col: _Collector) -> pd.Series | None:
    if "weight" not in frame.columns:
        return None
    w = _numeric(frame, "weight", col, expected="a positive weight")
    rows = _rows(frame)
    bad = w.notna() & (w <= 0)
    if bad.any():
        col.add_rows(
            rows[bad.to_numpy()], "weight", "a positive weight", frame["weight"][bad].tolist()
        )
    return w


def _segment(frame: pd.DataFrame, col: _Collector) -> pd.Series | None:
    if "segment" not in frame.columns:
        return None
    return _key(frame, "segment", col)


_RESERVED_EXPECTED = (
    f"a segment name other than '{RESERVED_SEGMENT}' in any case (reserved for the total)"
)


def _reserved_segments(
    segment: pd.Series, rows: np.ndarray, col: _Collector, *, alone_ok: bool
) -> pd.Series:
    """Rows whose segment is the reserved ``all`` in any spelling (contract §5: names match
    after trimming and case-folding) are a problem of ``col``'s file. With ``alone_ok``, a file
    in which every row says ``all`` means "no segments" and is spelled ``all``."""
    reserved = segment.map(is_all).astype(bool)
    if not reserved.any():
        return segment
    if alone_ok and bool(reserved[segment.notna()].all()):
        return segment.where(~reserved, RESERVED_SEGMENT)
    col.add_rows(
        rows[reserved.to_numpy()], "segment", _RESERVED_EXPECTED, segment[reserved].tolist()
    )
    return segment


def _rows(frame: pd.DataFrame) -> np.ndarray:
    """1-based row numbers as a spreadsheet shows them (blank lines in a CSV counted)."""
    rows = frame.attrs.get("rows")
    if rows is not None and len(rows) == len(frame):
        return np.asarray(rows)
    return np.arange(len(frame)) + _row_offset(frame)


def _nonempty(frame: pd.DataFrame, col: _Collector) -> None:
    if len(frame) == 0:
        col.add(None, None, "at least one data row", "a header only")
        col.raise_if_any()


# --------------------------------------------------------------------------------------------
# Validators


VW_COLUMNS = ["too_cheap", "cheap", "expensive", "too_expensive"]


def validate_vw(
    frame: pd.DataFrame, *, source: str | None = None, layout: InputLayout | None = None
) -> pd.DataFrame:
    """Validate Van Westendorp answers.

    ============== ==========================================================
    column         content
    ============== ==========================================================
    respondent_id  unique identifier
    too_cheap      price at which the product is too cheap to trust
    cheap          price at which it is a bargain
    expensive      price at which it is getting expensive
    too_expensive  price at which it is too expensive to consider
    buy_cheap      optional: purchase likelihood at the own ``cheap`` price
    buy_expensive  optional: purchase likelihood at the own ``expensive`` price
    segment        optional
    weight         optional, positive
    ============== ==========================================================

    Order violations are *not* errors here: they are a finding of the analysis, counted and
    reported by :func:`wtp.vanwestendorp.van_westendorp`.
    """
    name = source or _source_name(frame, "vw.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "vw", layout, name)
    _nonempty(frame, col)
    _require_columns(frame, ["respondent_id", *VW_COLUMNS], col)
    out = pd.DataFrame({"respondent_id": _key(frame, "respondent_id", col)})
    for c in VW_COLUMNS:
        out[c] = _numeric(frame, c, col, expected="a price (a number)", rule="money")
        neg = out[c] < 0
        if neg.any():
            col.add_rows(
                _rows(frame)[neg.to_numpy()], c, "a price of 0 or more", frame[c][neg].tolist()
            )
    for c in ("buy_cheap", "buy_expensive"):
        if c in frame.columns:
            # kept raw: text labels, a 1-5 scale or probabilities are resolved by the NMS step
            out[c] = frame[c].to_numpy()
    seg = _segment(frame, col)
    if seg is not None:
        out["segment"] = seg
    w = _positive_weight(frame, col)
    if w is not None:
        out["weight"] = w
    _check_unique(frame, out["respondent_id"], "respondent_id", col)
    col.raise_if_any()
    out["row"] = _rows(frame)
    out.attrs.update(source=name, column_map=frame.attrs.get("column_map", {}))
    return out


def _check_unique(frame, keys: pd.Series, column: str, col: _Collector, what="respondent") -> None:
    dup = keys.notna() & keys.duplicated(keep="first")
    if not dup.any():
        return
    rows = _rows(frame)
    first_row = pd.Series(rows, index=keys.index).groupby(keys).transform("min")
    if int(dup.sum()) > MAX_EXAMPLES:
        found = [
            f"{k} (already in row {int(f)})"
            for k, f in zip(keys[dup][:MAX_EXAMPLES], first_row[dup][:MAX_EXAMPLES], strict=True)
        ]
        col.add_rows(
            rows[dup.to_numpy()],
            column,
            f"one row per {what} (an id already used in an earlier row)",
            found,
        )
        return
    for r, k, f in zip(rows[dup.to_numpy()], keys[dup], first_row[dup], strict=True):
        col.add(int(r), column, f"one row per {what} (this id is already in row {int(f)})", k)


def _wide_maxdiff_to_long(frame: pd.DataFrame, col: _Collector) -> pd.DataFrame:
    item_cols = [c for c in frame.columns if re.fullmatch(r"item_?\d+", str(c))]
    item_cols.sort(key=lambda c: int(re.sub(r"\D", "", c)))
    rows = _rows(frame)
    ids = _key(frame, "respondent_id", col)
    task = _key(frame, "task", col)
    best = _key(frame, "best", col)
    worst = _key(frame, "worst", col)
    items = frame[item_cols]
    if pd.api.types.is_float_dtype(items.stack()):
        items = items.astype("Int64")
    items = items.astype("string").apply(lambda s: s.str.strip())
    long_parts = []
    for pos, c in enumerate(item_cols, start=1):
        part = pd.DataFrame(
            {
                "respondent_id": ids,
                "task": task,
                "position": pos,
                "item": items[c].astype(object),
                "best": (items[c] == best).astype(float).fillna(0.0),
                "worst": (items[c] == worst).astype(float).fillna(0.0),
                "row": rows,
            }
        )
        long_parts.append(part[items[c].notna().to_numpy()])
    shown = items.notna()
    best_in = (items.eq(best, axis=0)).fillna(False).any(axis=1)
    worst_in = (items.eq(worst, axis=0)).fillna(False).any(axis=1)
    for name, inside, picked in (("best", best_in, best), ("worst", worst_in, worst)):
        off = (~inside & picked.notna()).to_numpy()
        col.add_rows(
            rows[off],
            name,
            "an item code shown in this task (" + ", ".join(item_cols) + ")",
            picked[off].tolist(),
        )
    same = (best == worst) & best.notna()
    col.add_rows(
        rows[same.to_numpy()], "worst", "a different item from 'best'", best[same].tolist()
    )
    few = shown.sum(axis=1) < 2
    col.add_rows(rows[few.to_numpy()], item_cols[0], "at least two items shown in a task")
    for pos, c in enumerate(item_cols[1:], start=1):
        again = items[c].notna() & items[item_cols[:pos]].eq(items[c], axis=0).any(axis=1)
        col.add_rows(
            rows[again.to_numpy()],
            c,
            "an item not already shown in this task",
            items[c][again].tolist(),
        )
    out = pd.concat(long_parts, ignore_index=True).sort_values(["row", "position"], kind="stable")
    return out.reset_index(drop=True)


def validate_maxdiff(
    frame: pd.DataFrame, *, source: str | None = None, layout: InputLayout | None = None
) -> pd.DataFrame:
    """Validate MaxDiff answers (long or wide layout) into the long layout.

    Long layout, one row per item shown in a task:

    ============== ===========================
    respondent_id  identifier
    task           task number or code
    item           item code (text)
    best           1 if chosen best, else 0
    worst          1 if chosen worst, else 0
    ============== ===========================

    The wide layout ``respondent_id, task, item_1..item_K, best, worst`` (``best``/``worst``
    hold item codes) is converted. Returns the long layout with ``position`` and ``row``.
    """
    name = source or _source_name(frame, "maxdiff.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "maxdiff", layout, name)
    _nonempty(frame, col)
    wide = "item" not in frame.columns and any(
        re.fullmatch(r"item_?\d+", str(c)) for c in frame.columns
    )
    if wide:
        _require_columns(frame, ["respondent_id", "task", "best", "worst"], col)
        out = _wide_maxdiff_to_long(frame, col)
    else:
        _require_columns(frame, ["respondent_id", "task", "item", "best", "worst"], col)
        out = pd.DataFrame(
            {
                "respondent_id": _key(frame, "respondent_id", col),
                "task": _key(frame, "task", col),
                "item": _key(frame, "item", col),
                "best": _binary(frame, "best", col),
                "worst": _binary(frame, "worst", col),
                "row": _rows(frame),
            }
        )
        out["position"] = out.groupby(["respondent_id", "task"], sort=False).cumcount() + 1
        both = (out["best"] == 1) & (out["worst"] == 1)
        col.add_rows(out["row"][both], "worst", "an item that is not also 'best' in the same row")
    seg = _segment(frame, col)
    w = _positive_weight(frame, col)
    col.raise_if_any()
    if seg is not None:
        out["segment"] = seg.to_numpy()[np.searchsorted(_rows(frame), out["row"].to_numpy())]
    if w is not None:
        out["weight"] = w.to_numpy()[np.searchsorted(_rows(frame), out["row"].to_numpy())]
    if not wide:
        _one_pick_per_task(out, "best", "best pick", col, "best picks")
        _one_pick_per_task(out, "worst", "worst pick", col, "worst picks")
        g = out.groupby(["respondent_id", "task"], sort=False)
        first = ~out.duplicated(["respondent_id", "task"])
        dup = out.duplicated(["respondent_id", "task", "item"])
        col.add_rows(
            out["row"][dup], "item", "each item at most once per task", out["item"][dup].tolist()
        )
        size = g["item"].transform("size")
        few = (size < 2) & first
        col.add_rows(out["row"][few], "item", "at least two items shown in a task")
    if "segment" in out.columns:
        _check_constant_per_respondent(out, "segment", col)
    if "weight" in out.columns:
        _check_constant_per_respondent(out, "weight", col)
    col.raise_if_any()
    out.attrs.update(source=name, layout="wide" if wide else "long")
    return out


def _check_constant_per_respondent(out: pd.DataFrame, column: str, col: _Collector) -> None:
    # the rows that differ from the respondent's first row are the ones to fix
    first = out.groupby("respondent_id", sort=False)[column].transform("first")
    bad = (out[column] != first) & out[column].notna()
    col.add_rows(
        out["row"][bad],
        column,
        f"one {column} per respondent (the same as on this respondent's first row)",
        out[column][bad].tolist(),
    )


def _one_pick_per_task(
    out: pd.DataFrame, column: str, what: str, col: _Collector, counted: str
) -> None:
    """Exactly one 1 in ``column`` per (respondent, task); point at the extra pick, or the task's first row."""
    g = out.groupby(["respondent_id", "task"], sort=False)[column]
    n = g.transform("sum")
    extra = (out[column] == 1) & (g.cumsum() > 1)
    none_first = (n == 0) & ~out.duplicated(["respondent_id", "task"])
    for mask, starts in ((extra, ""), (none_first, ", which starts at this row")):
        if not mask.any():
            continue
        cases = list(
            zip(
                out["respondent_id"][mask],
                out["task"][mask],
                out["row"][mask],
                n[mask],
                strict=True,
            )
        )
        if len(cases) > MAX_EXAMPLES:
            found = [
                f"{int(k)} {counted} in task ({rid!r}, {task!r})"
                for rid, task, _r, k in cases[:MAX_EXAMPLES]
            ]
            col.add_rows(
                [r for _a, _b, r, _k in cases], column, f"exactly one {what} per task", found
            )
            continue
        for rid, task, r, k in cases:
            col.add(
                int(r),
                column,
                f"exactly one {what} in task ({rid!r}, {task!r}){starts}",
                f"{int(k)} {counted}",
            )


def validate_conjoint(
    frame: pd.DataFrame, *, source: str | None = None, layout: InputLayout | None = None
) -> pd.DataFrame:
    """Validate choice-based conjoint answers (long layout).

    ============== =================================================
    respondent_id  identifier
    task           task number or code
    alt            alternative within the task
    <attribute>    one column per attribute, levels as text
    price          numeric (empty on the no-choice row)
    chosen         1 for the chosen alternative, else 0
    none           optional 0/1: the no-choice alternative
    ============== =================================================

    Returns the frame with typed columns, a boolean ``none`` column and ``row``; the attribute
    columns are listed in ``attrs['attributes']``.
    """
    name = source or _source_name(frame, "conjoint.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "conjoint", layout, name)
    _nonempty(frame, col)
    _require_columns(frame, ["respondent_id", "task", "alt", "price", "chosen"], col)
    attributes = frame.attrs.get("attributes") or [
        c for c in frame.columns if c not in CONJOINT_NON_ATTRIBUTES
    ]
    out = pd.DataFrame(
        {
            "respondent_id": _key(frame, "respondent_id", col),
            "task": _key(frame, "task", col),
            "alt": _key(frame, "alt", col),
        }
    )
    none = (
        _binary(frame, "none", col).fillna(0.0).astype(bool)
        if "none" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    rows = _rows(frame)
    for a in attributes:
        values = frame[a]
        if (
            pd.api.types.is_float_dtype(values)
            and (values.dropna() == values.dropna().round()).all()
        ):
            values = values.astype("Int64")
        text = values.astype("string").str.strip()
        text = text.where(text != "", pd.NA)
        missing = text.isna() & ~none
        col.add_rows(rows[missing.to_numpy()], a, "a level (only the no-choice row may be empty)")
        out[a] = text.astype(object).where(text.notna(), None)
    for c in [*attributes, "price"]:
        text = frame[c].astype("string").str.strip()
        filled = none & text.notna() & (text != "")
        col.add_rows(
            rows[filled.to_numpy()],
            c,
            "an empty cell on the no-choice row (none = 1)",
            frame[c][filled].tolist(),
        )
    price = _numeric(
        frame.assign(price=frame["price"].where(~none.to_numpy(), None)),
        "price",
        col,
        allow_missing=True,
        expected="a numeric price",
        rule="money",
    )
    missing_price = price.isna() & ~none & ~_text_bad(frame["price"], frame, "money")
    col.add_rows(
        rows[missing_price.to_numpy()],
        "price",
        "a numeric price (only the no-choice row may be empty)",
    )
    out["price"] = price.where(~none, np.nan)
    out["chosen"] = _binary(frame, "chosen", col)
    out["none"] = none.to_numpy()
    seg = _segment(frame, col)
    if seg is not None:
        out["segment"] = seg
    w = _positive_weight(frame, col)
    if w is not None:
        out["weight"] = w
    out["row"] = rows
    col.raise_if_any()
    _one_pick_per_task(out, "chosen", "chosen alternative", col, "chosen")
    g = out.groupby(["respondent_id", "task"], sort=False)
    first = ~out.duplicated(["respondent_id", "task"])
    dup = out.duplicated(["respondent_id", "task", "alt"])
    col.add_rows(out["row"][dup], "alt", "each alternative once per task", out["alt"][dup].tolist())
    size = g["alt"].transform("size")
    col.add_rows(out["row"][(size < 2) & first], "alt", "at least two alternatives in a task")
    # a level seen in a single task cannot be estimated: its part-worth is not identified
    for a in attributes:
        seen = out.loc[~out["none"], ["respondent_id", "task", a]].drop_duplicates()
        counts = seen[a].value_counts()
        lonely = counts[counts < 2].index
        for level in lonely:
            r = out.loc[(out[a] == level) & ~out["none"], "row"].iloc[0]
            col.add(
                int(r),
                a,
                "a level that appears in more than one task (a level in one task cannot be estimated)",
                level,
            )
    if "segment" in out.columns:
        _check_constant_per_respondent(out, "segment", col)
    col.raise_if_any()
    out.attrs.update(source=name, attributes=attributes)
    return out


# how each segments.csv number may be written (see wtp.columns.parse_numbers)
_SEGMENT_RULES = {
    "arpa": "money",
    "cac": "money",
    "churn_rate": "share",
    "conversion_rate": "share",
    "gross_margin": "share",
    "market_growth": "share",
}


def validate_segments(
    frame: pd.DataFrame,
    *,
    source: str | None = None,
    need_arpa_churn: bool = True,
    layout: InputLayout | None = None,
) -> pd.DataFrame:
    """Validate segment performance (one row per segment).

    Required ``segment, customers, cac`` and, unless customers.csv provides them,
    ``arpa, churn_rate``. Optional ``trials, conversions`` or ``conversion_rate``,
    ``gross_margin``, ``market_size``, ``market_growth``, ``seats_per_account``.
    """
    name = source or _source_name(frame, "segments.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "segments", layout, name)
    _nonempty(frame, col)
    required = ["segment", "customers", "cac"] + (["arpa", "churn_rate"] if need_arpa_churn else [])
    _require_columns(frame, required, col)
    out = pd.DataFrame({"segment": _key(frame, "segment", col)})
    rows = _rows(frame)
    specs = {
        "customers": (0, None, "a customer count of 0 or more"),
        "arpa": (0, None, "revenue per account of 0 or more"),
        "churn_rate": (0, 1, "a churn rate between 0 and 1 (share lost per period)"),
        "cac": (0, None, "an acquisition cost of 0 or more"),
        "trials": (0, None, "a trial count of 0 or more"),
        "conversions": (0, None, "a conversion count of 0 or more"),
        "conversion_rate": (0, 1, "a conversion rate between 0 and 1"),
        "gross_margin": (0, 1, "a gross margin between 0 and 1"),
        "market_size": (0, None, "a market size (potential customers) of 0 or more"),
        "market_growth": (-1, None, "a growth rate per year above -1 (e.g. 0.12 for 12%)"),
        "seats_per_account": (0, None, "seats per account above 0"),
    }
    for c, (lo, hi, expected) in specs.items():
        if c not in frame.columns:
            continue
        # an empty cac is allowed (unknown acquisition cost: LTV/CAC is not scored), so that
        # `wtp explore`'s segments.csv, which cannot know it, is read as is
        values = _numeric(
            frame,
            c,
            col,
            allow_missing=c not in required or c == "cac",
            expected=expected,
            rule=_SEGMENT_RULES.get(c, "number"),
        )
        bad = values.notna() & ((values < lo) | ((values > hi) if hi is not None else False))
        if c == "seats_per_account":
            bad = bad | (values == 0)
        col.add_rows(rows[bad.to_numpy()], c, expected, frame[c][bad].tolist())
        out[c] = values
    if {"trials", "conversions"} <= set(out.columns):
        over = out["conversions"] > out["trials"]
        col.add_rows(
            rows[over.to_numpy()],
            "conversions",
            "no more conversions than trials",
            frame["conversions"][over].tolist(),
        )
    dup = out["segment"].duplicated()
    col.add_rows(
        rows[dup.to_numpy()], "segment", "one row per segment", out["segment"][dup].tolist()
    )
    _reserved_segments(out["segment"], rows, col, alone_ok=False)
    extra = [c for c in frame.columns if c not in out.columns]
    for c in extra:
        out[c] = frame[c].to_numpy()
    col.raise_if_any()
    out["row"] = rows
    out.attrs.update(source=name)
    return out


def validate_customers(
    frame: pd.DataFrame,
    *,
    source: str | None = None,
    segments: Iterable[str] | None = None,
    layout: InputLayout | None = None,
) -> pd.DataFrame:
    """Validate customers (one row per customer): ``customer_id, segment, start_date, end_date``
    (empty ``end_date`` = still active), optional ``mrr``."""
    name = source or _source_name(frame, "customers.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "customers", layout, name)
    _nonempty(frame, col)
    _require_columns(frame, ["customer_id", "segment", "start_date", "end_date"], col)
    rows = _rows(frame)
    out = pd.DataFrame(
        {"customer_id": _key(frame, "customer_id", col), "segment": _key(frame, "segment", col)}
    )
    for c in ("start_date", "end_date"):
        values = frame[c]
        parsed = _dates(values)
        text = values.astype("string").str.strip()
        bad = parsed.isna() & text.notna() & (text != "")
        col.add_rows(
            rows[bad.to_numpy()],
            c,
            "a date (YYYY-MM-DD) between 1677 and 2262",
            values[bad].tolist(),
        )
        if c == "start_date":
            miss = parsed.isna() & ~bad
            col.add_rows(rows[miss.to_numpy()], c, "a start date (YYYY-MM-DD)")
        out[c] = pd.to_datetime(parsed).astype("datetime64[ns]")
    before = out["end_date"].notna() & (out["end_date"] < out["start_date"])
    col.add_rows(
        rows[before.to_numpy()],
        "end_date",
        "an end date on or after the start date",
        frame["end_date"][before].tolist(),
    )
    if "mrr" in frame.columns:
        mrr = _numeric(
            frame,
            "mrr",
            col,
            allow_missing=True,
            expected="monthly recurring revenue (a number)",
            rule="money",
        )
        neg = mrr < 0
        col.add_rows(
            rows[neg.to_numpy()], "mrr", "revenue of 0 or more", frame["mrr"][neg].tolist()
        )
        out["mrr"] = mrr
    for c, dates in _activity_dates(frame).items():
        out[c] = dates  # e.g. a last invoice date: evidence of how long the base was observed
    _check_unique(frame, out["customer_id"], "customer_id", col, what="customer")
    _reserved_segments(out["segment"], rows, col, alone_ok=False)
    if segments is not None:
        known = list(segments)
        spelled, unknown_names = match_segments(out["segment"].dropna().unique(), known)
        out["segment"] = out["segment"].map(lambda v: spelled.get(v, v))
        for name_ in unknown_names:
            where = (out["segment"] == name_).to_numpy()
            col.add_rows(
                rows[where],
                "segment",
                "a segment listed in segments.csv ("
                + ", ".join(known)
                + ")"
                + suggestion(name_, known),
                [name_] * int(where.sum()),
            )
    col.raise_if_any()
    out["row"] = rows
    out.attrs.update(source=name)
    return out


_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$"


def _activity_dates(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Other columns of customers.csv that hold only dates (ISO ``YYYY-MM-DD``), parsed."""
    out = {}
    for c in frame.columns:
        if c in ("customer_id", "segment", "start_date", "end_date", "mrr", "converted", "row"):
            continue
        values = frame[c]
        if pd.api.types.is_datetime64_any_dtype(values):
            out[c] = pd.to_datetime(values).astype("datetime64[ns]")
            continue
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        text = values.astype("string").str.strip()
        text = text[text.notna() & (text != "")]
        if len(text) and text.str.fullmatch(_ISO_DATE).all():
            out[c] = pd.to_datetime(
                values.astype("string").str.strip().replace("", pd.NA),
                errors="coerce",
                format="mixed",
            ).astype("datetime64[ns]")
    return out


def _dates(values: pd.Series) -> pd.Series:
    """Dates as datetime64; text that is no date, or a date pandas cannot hold (before 1677 or
    after 2262, e.g. a typo '1066-01-01'), becomes NaT and is reported by the caller."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        try:
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
            # one unparseable cell can fail the whole conversion: parse cell by cell
            def one(v):
                try:
                    return pd.Timestamp(v)
                except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError, TypeError):
                    return pd.NaT

            parsed = values.map(one)
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        parsed = pd.Series(
            [v if isinstance(v, pd.Timestamp) else pd.NaT for v in parsed],
            index=values.index,
            dtype="datetime64[us]",
        )
    # pandas may hold 1600-01-01 at microsecond resolution, but later stages need nanoseconds
    inside = parsed.isna() | ((parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max))
    return parsed.where(inside).astype("datetime64[ns]")


def match_segments(names: Iterable[str], known: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Segment names matched to ``known`` after trimming and case-folding.

    Returns (name → the spelling in ``known`` for every name that matches, the names that do
    not match any). ``Mid-market`` does not match ``Midmarket``: only case and surrounding
    spaces are forgiven, so a different name is never joined by a guess.
    """
    lookup: dict[str, str] = {}
    for k in known:
        lookup.setdefault(segment_key(k), str(k))
    spelled, unknown = {}, []
    for n in names:
        hit = lookup.get(segment_key(n))
        if hit is None:
            unknown.append(str(n))
        else:
            spelled[n] = hit
    return spelled, unknown


def validate_respondents(
    frame: pd.DataFrame, *, source: str | None = None, layout: InputLayout | None = None
) -> pd.DataFrame:
    """Validate respondents: ``respondent_id, segment[, weight][, profile columns]``."""
    name = source or _source_name(frame, "respondents.csv")
    col = _Collector(name)
    _nonempty(frame, col)
    frame = apply_layout(frame, "respondents", layout, name)
    _nonempty(frame, col)
    _require_columns(frame, ["respondent_id", "segment"], col)
    out = frame.copy()
    out["respondent_id"] = _key(frame, "respondent_id", col)
    # a reserved name is reported here, in the file that holds it, not in every instrument
    out["segment"] = _reserved_segments(
        _key(frame, "segment", col), _rows(frame), col, alone_ok=True
    )
    w = _positive_weight(frame, col)
    if w is not None:
        out["weight"] = w
    _check_unique(frame, out["respondent_id"], "respondent_id", col)
    col.raise_if_any()
    out["row"] = _rows(frame)
    out.attrs.update(source=name)
    return out


def attach_segments(answers: pd.DataFrame, respondents: pd.DataFrame | None = None) -> pd.DataFrame:
    """Give every answer row a ``segment`` and a ``weight``.

    Segment membership comes from the instrument's own ``segment`` column or from
    ``respondents`` joined on ``respondent_id``; when both exist they must agree, and with
    neither every respondent is in ``all``. Weights come from either file (1 when absent).
    """
    name = str(answers.attrs.get("source", "input"))
    col = _Collector(name)
    own_segments = "segment" in answers.columns
    out = answers.copy()
    out.attrs.update(answers.attrs)
    if respondents is not None:
        lookup = respondents.set_index("respondent_id")
        known = out["respondent_id"].isin(lookup.index)
        first = ~out.duplicated("respondent_id")
        missing = ~known & first
        col.add_rows(
            out["row"][missing],
            "respondent_id",
            f"a respondent listed in {respondents.attrs.get('source', 'respondents.csv')}",
            out["respondent_id"][missing].tolist(),
        )
        joined = out["respondent_id"].map(lookup["segment"])
        if "segment" in out.columns:
            # names agree after trimming and case-folding, as every segment match (contract §5)
            def folded(x):
                return x.astype("string").str.strip().str.casefold()

            clash = known & (folded(joined) != folded(out["segment"])).fillna(True) & first
            col.add_rows(
                out["row"][clash],
                "segment",
                f"the segment given in {respondents.attrs.get('source', 'respondents.csv')}",
                [
                    f"{a} (respondents file says {b})"
                    for a, b in zip(out["segment"][clash], joined[clash], strict=True)
                ],
            )
            out["segment"] = out["segment"].where(~known, joined)  # the respondents file's spelling
        else:
            out["segment"] = joined
        if "weight" in lookup.columns:
            jw = out["respondent_id"].map(lookup["weight"])
            if "weight" in out.columns:
                clash = known & ~np.isclose(jw.astype(float), out["weight"].astype(float)) & first
                col.add_rows(
                    out["row"][clash],
                    "weight",
                    "the weight given in the respondents file",
                    out["weight"][clash].tolist(),
                )
            else:
                out["weight"] = jw
    if "segment" not in out.columns:
        out["segment"] = RESERVED_SEGMENT
    elif own_segments:
        # the file's own segment column (a joined one was checked in the respondents file)
        first = ~out.duplicated("respondent_id")
        _reserved_segments(out["segment"][first], out["row"][first].to_numpy(), col, alone_ok=True)
        reserved = out["segment"].map(is_all).astype(bool)
        out["segment"] = out["segment"].where(~reserved, RESERVED_SEGMENT)
    if "weight" not in out.columns:
        out["weight"] = 1.0
    col.raise_if_any()
    out["weight"] = out["weight"].astype(float)
    return out


# --------------------------------------------------------------------------------------------
# Output lives in wtp.output; these names stay importable from here for existing callers.

from wtp.output import (  # noqa: E402
    MANIFEST,
    atomic_output_dir,
    check_output_dir,
    neutralise_formulas,
    remember_input,
    write_csv,
)
