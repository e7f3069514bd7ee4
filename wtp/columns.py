"""Survey-tool exports as they come: column maps, header rows and answers written as text.

Every validator in :mod:`wtp.io` first passes its raw frame through :func:`apply_layout`, which
does three things, in this order:

1. **Find the header.** A title block above the header (an .xlsx export with the survey's name,
   a date and a blank line) is skipped: the header is the first row among the first
   :data:`HEADER_SEARCH` rows that names the most of the file kind's columns. ``header_row``
   (1-based, as a spreadsheet shows it) sets it instead.
2. **Name the columns.** A contract column is found, in this order, through the column map
   (``[columns.<kind>]`` in study.toml, ``--columns a=b`` on a command), then by its own name
   compared loosely (case, surrounding spaces and ``_``/``-``/space differences ignored; in a
   conjoint file, whose other columns are attributes by any name, the optional ``none``,
   ``segment`` and ``weight`` need their exact name or a map), then,
   for ``respondent_id`` and ``customer_id`` only, by the names survey tools give it
   (``Response ID``, ``Respondent ID``, ``respondent``, ``resp_id``, ``id``).
3. **Drop extra header rows** under the header: Qualtrics CSV/XLSX exports carry three header
   rows (field ids, question text, ``{"ImportId": ...}``), SurveyMonkey two (question text, then
   ``Response`` / ``Open-Ended Response``). They are recognised when every numeric column of the
   file kind holds text on that row, or the row holds Qualtrics import ids or SurveyMonkey's
   sub-header words; ``header_rows`` (how many rows sit under the header) sets it instead.

Numbers written as text follow one rule per column (:func:`parse_numbers`):

============ ======================================================= =========================
rule         accepted                                                 not accepted
============ ======================================================= =========================
``number``   ``12``, ``12.5``, ``12,000`` (thousands grouped in 3s)   a currency, a percent
``money``    as ``number``, plus one currency sign, code or word      a percent; a currency
             before or after (``$1.49``, ``6 dollars``, ``EUR 12``)   other than the study's
``share``    as ``number`` (0.7), or a percent (``70%`` → 0.7)        a currency
============ ======================================================= =========================

The decimal mark is the file's (sniffed for CSV); thousands separators are the other mark, a
space, a no-break space or an apostrophe, and only in groups of three digits. A cell that breaks
its column's rule is reported, and the problems of one column are one line with their count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem, _loose, suggestion

KINDS = ("vw", "maxdiff", "conjoint", "respondents", "segments", "customers")

# file kind → (required columns, optional columns) of the contract
KIND_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vw": (
        ("respondent_id", "too_cheap", "cheap", "expensive", "too_expensive"),
        ("buy_cheap", "buy_expensive", "segment", "weight"),
    ),
    "maxdiff": (("respondent_id", "task", "best", "worst"), ("item", "segment", "weight")),
    "conjoint": (
        ("respondent_id", "task", "alt", "price", "chosen"),
        ("none", "segment", "weight"),
    ),
    "respondents": (("respondent_id", "segment"), ("weight",)),
    "segments": (
        ("segment", "customers", "cac"),
        (
            "arpa",
            "churn_rate",
            "trials",
            "conversions",
            "conversion_rate",
            "gross_margin",
            "market_size",
            "market_growth",
            "seats_per_account",
        ),
    ),
    "customers": (
        ("customer_id", "segment", "start_date", "end_date"),
        ("mrr", "trial_start", "converted"),
    ),
}
# a conjoint file's columns that are not attributes (``row``: the 1-based file row validation adds)
CONJOINT_NON_ATTRIBUTES = frozenset(
    (*KIND_COLUMNS["conjoint"][0], *KIND_COLUMNS["conjoint"][1], "row")
)

# the names survey tools and public data sets give the identifier column
ID_ALIASES = {
    "respondent_id": (
        "respondent",
        "respondent id",
        "response id",
        "responseid",
        "resp id",
        "id",
        "record id",
    ),
    "customer_id": ("customer", "customer id", "customerid", "account id", "account"),
}

# columns that hold numbers on every data row: a row where all of them hold text is a header row
NUMERIC_COLUMNS = {
    "vw": ("too_cheap", "cheap", "expensive", "too_expensive"),
    "maxdiff": ("best", "worst"),
    "conjoint": ("chosen",),
    "segments": ("customers", "cac"),
}

HEADER_SEARCH = 12
MAX_EXTRA_HEADER_ROWS = 3
# SurveyMonkey writes these under each question on the second header row
_SUBHEADER_WORDS = {
    "response",
    "open-ended response",
    "open ended response",
    "other (please specify)",
}


@dataclass(frozen=True)
class InputLayout:
    """How one input file is laid out, from study.toml (``[columns.<kind>]``, ``[input]``) or flags.

    ``columns`` maps a contract column to the file's column (``respondent_id = "Response ID"``);
    for conjoint, ``attributes`` lists the attribute columns (default: every other column).
    ``header_row`` is the 1-based row holding the column names (None: found);
    ``header_rows`` how many rows of question text sit under it (None: recognised).
    ``currency`` is the study's ISO code: money written in another currency is an error.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    attributes: tuple[str, ...] | None = None
    header_row: int | None = None
    header_rows: int | None = None
    currency: str | None = None


def parse_column_map(
    text: str | Sequence[str] | None, *, option: str = "--columns"
) -> dict[str, object]:
    """``"respondent_id=Response ID,cheap=bargain"`` → a dict; ``attributes=A|B|C`` → a list.

    Several such texts (an option given more than once) make one map."""
    if not text:
        return {}
    out: dict[str, object] = {}
    problems = []
    parts = [p for chunk in ([text] if isinstance(text, str) else text) for p in chunk.split(",")]
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            problems.append(
                Problem(
                    option,
                    None,
                    None,
                    "contract_column=file column pairs separated by commas",
                    part,
                )
            )
            continue
        key = key.strip()
        out[key] = (
            [v.strip() for v in value.split("|") if v.strip()]
            if key == "attributes"
            else value.strip()
        )
    if problems:
        raise InputError(problems)
    return out


def compact_name(name: object) -> str:
    """A header as a free-form map matches it: case, spaces, ``_`` and ``-`` all ignored
    (``CustOrgID`` = ``cust_org_id``). Looser than the contract columns' rule, which keeps word
    breaks, because profile columns have no contract name to anchor them."""
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


def apply_column_map(
    frame: pd.DataFrame, columns: Mapping[str, str] | None, *, source: str
) -> pd.DataFrame:
    """Rename a file's columns by a free-form map (``name → the file's header``), for files whose
    columns are not all contract columns (customers.csv with profile columns, in
    :mod:`wtp.explore`); the input is not modified.

    A header matches by :func:`compact_name`. A file column that a mapped name would shadow is
    dropped (the map says which one is meant).
    """
    if not columns:
        return frame
    by_name: dict[str, str] = {}
    for c in frame.columns:
        by_name.setdefault(compact_name(c), c)
    rename: dict[str, str] = {}
    problems = []
    header = [str(c) for c in frame.columns]
    for name, wanted in columns.items():
        found = by_name.get(compact_name(wanted))
        if found is None:
            problems.append(
                Problem(
                    source,
                    1,
                    wanted,
                    f"a column '{wanted}' for {name} in the header ({', '.join(header)})"
                    + suggestion(str(wanted), header),
                )
            )
            continue
        rename[found] = name
    if problems:
        raise InputError(problems)
    shadowed = [c for c in frame.columns if c not in rename and c in set(rename.values())]
    out = frame.drop(columns=shadowed).rename(columns=rename)
    out.attrs.update(frame.attrs)
    return out


def layout_from_settings(columns: Mapping[str, object] | None, **kw) -> InputLayout:
    """An :class:`InputLayout` from a column map dict (its ``attributes`` key taken apart)."""
    columns = dict(columns or {})
    attributes = columns.pop("attributes", None)
    return InputLayout(
        columns={str(k): str(v) for k, v in columns.items()},
        attributes=tuple(str(a) for a in attributes) if attributes is not None else None,
        **kw,
    )


def check_column_map(columns: Mapping[str, object], kind: str, source: str) -> list[Problem]:
    """Problems with a column map's keys: each must be a contract column of ``kind``."""
    required, optional = KIND_COLUMNS[kind]
    known = [*required, *optional] + (["attributes"] if kind == "conjoint" else [])
    problems = []
    for key, value in columns.items():
        if key not in known:
            problems.append(
                Problem(
                    source,
                    None,
                    key,
                    f"a column of {kind} files ({', '.join(known)})" + suggestion(key, known),
                    key,
                )
            )
        elif key == "attributes":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                problems.append(Problem(source, None, key, "a list of column names", value))
        elif not isinstance(value, str) or not value.strip():
            problems.append(Problem(source, None, key, "the file's column name (text)", value))
    return problems


# --------------------------------------------------------------------------------------------
# Header


def _header_names(kind: str, layout: InputLayout) -> set[str]:
    required, optional = KIND_COLUMNS[kind]
    names = {_loose(c) for c in (*required, *optional)}
    names |= {_loose(v) for v in layout.columns.values()}
    names |= {_loose(a) for a in layout.attributes or ()}
    for contract, aliases in ID_ALIASES.items():
        if contract in required:
            names |= set(aliases)
    return names


def _score(cells: Iterable[object], names: set[str]) -> int:
    return len({_loose(c) for c in cells if isinstance(c, str) and c.strip()} & names)


def _cell_name(value: object, j: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"column {j + 1}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _relocate_header(
    frame: pd.DataFrame, kind: str, layout: InputLayout, source: str
) -> pd.DataFrame:
    offset = int(frame.attrs.get("row_offset", 2))
    if layout.header_row is not None:
        at = int(layout.header_row) - offset  # index of the header among the data rows
        if at < -1 or at >= len(frame):
            raise InputError(
                Problem(
                    source,
                    None,
                    None,
                    f"a header row between {offset - 1} and {offset + len(frame) - 1}",
                    f"header_row = {layout.header_row}",
                )
            )
        if at == -1:
            return frame
    else:
        names = _header_names(kind, layout)
        best, at = _score(frame.columns, names), -1
        for i, cells in enumerate(frame.head(HEADER_SEARCH).itertuples(index=False)):
            s = _score(cells, names)
            if s > best and s >= 2:
                best, at = s, i
        if at == -1:
            return frame
    header = [_cell_name(v, j) for j, v in enumerate(frame.iloc[at])]
    out = frame.iloc[at + 1 :].reset_index(drop=True)
    out.columns = header
    out.attrs.update(frame.attrs)
    out.attrs["row_offset"] = offset + at + 1
    return out


def _extra_header_rows(frame: pd.DataFrame, kind: str) -> int:
    numeric = [c for c in NUMERIC_COLUMNS.get(kind, ()) if c in frame.columns]
    if kind == "maxdiff" and "item" not in frame.columns:
        numeric = []  # the wide layout's best/worst hold item codes
    n = 0
    for i in range(min(MAX_EXTRA_HEADER_ROWS, len(frame))):
        row = frame.iloc[i]
        text = [str(v).strip() for v in row if isinstance(v, str) and v.strip()]
        if any(t.startswith('{"ImportId"') or t.startswith("{'ImportId'") for t in text):
            n = i + 1
            continue
        if text and all(t.casefold() in _SUBHEADER_WORDS for t in text):
            n = i + 1
            continue
        if (
            numeric
            and all(_is_text(row[c]) for c in numeric)
            and _names_a_column(row, kind, frame.attrs.get("column_map", {}))
        ):
            n = i + 1
            continue
        break
    return n


# the column whose cell tells a header row (its label, or nothing) from a data row (an id)
_KEY_COLUMN = {"segments": "segment", "customers": "customer_id"}


def _names_a_column(row: pd.Series, kind: str, column_map: Mapping[str, str]) -> bool:
    """A row of question text labels its id column ('Response ID') or leaves it empty; a data
    row whose answers all happen to be text ('don't know') has an id, and stays a data row."""
    key = _KEY_COLUMN.get(kind, "respondent_id")
    if key not in row.index:
        return True
    cell = row[key]
    if not isinstance(cell, str) or not cell.strip():
        return cell is None or (isinstance(cell, float) and np.isnan(cell)) or isinstance(cell, str)
    labels = {_loose(key), _loose(column_map.get(key, key)), *ID_ALIASES.get(key, ())}
    return _loose(cell) in labels


def _is_text(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    return bool(parse_numbers(pd.Series([value]), "money")[1].iloc[0])


# --------------------------------------------------------------------------------------------
# Names


def _rename(
    frame: pd.DataFrame, kind: str, layout: InputLayout, source: str
) -> tuple[pd.DataFrame, list[Problem]]:
    required, optional = KIND_COLUMNS[kind]
    contract = [*required, *optional]
    header = [str(c) for c in frame.columns]
    loose = {}
    for c in header:
        loose.setdefault(_loose(c), c)
    problems = check_column_map(
        {
            **layout.columns,
            **({"attributes": list(layout.attributes)} if layout.attributes is not None else {}),
        },
        kind,
        source,
    )
    rename: dict[str, str] = {}
    for key, target in layout.columns.items():
        if key not in contract:
            continue
        found = target if target in header else loose.get(_loose(target))
        if found is None:
            problems.append(
                Problem(
                    source,
                    1,
                    key,
                    f"the column '{target}' named for {key} in the column map, which the header does not have"
                    + suggestion(target, header),
                )
            )
            continue
        rename[found] = key
    taken = set(rename.values())
    # a column named as a conjoint attribute stays one (eggs have a 'Weight' attribute)
    attribute_names = {_loose(a) for a in layout.attributes or ()}
    for c in contract:
        if c in taken:
            continue
        found = c if c in header else loose.get(_loose(c))
        if found is not None and _loose(found) in attribute_names:
            found = None
        if found is not None and found != c and kind == "conjoint" and c in optional:
            # every other conjoint column is an attribute, whatever its name: 'Weight' of an egg
            # is not a respondent weight, so the optional columns match by exact name or map only
            found = None
        if found is None and c in ID_ALIASES:
            hits = [loose[a] for a in ID_ALIASES[c] if a in loose]
            found = hits[0] if len(hits) == 1 else None
        if found is not None and found not in rename:
            rename[found] = c
    # a file column that looks like a contract column mapped to another one is set aside
    shadowed = [
        h
        for h in header
        if h not in rename and (h in taken or _loose(h) in {_loose(t) for t in taken})
    ]
    out = frame.drop(columns=shadowed).rename(columns=rename)
    out.attrs.update(frame.attrs)
    out.attrs["column_map"] = {v: k for k, v in rename.items() if k != v}
    if layout.attributes is not None:
        keep = []
        for a in layout.attributes:
            found = a if a in out.columns else loose.get(_loose(a))
            if found is None or found not in out.columns:
                problems.append(
                    Problem(
                        source,
                        1,
                        a,
                        "an attribute column named in the column map, which the header does not have"
                        + suggestion(a, header),
                    )
                )
            else:
                keep.append(found)
        out.attrs["attributes"] = keep
    return out, problems


def apply_layout(
    frame: pd.DataFrame, kind: str, layout: InputLayout | None, source: str
) -> pd.DataFrame:
    """Header found, extra header rows dropped, contract names given (see the module docstring)."""
    layout = layout or InputLayout()
    frame = _relocate_header(frame, kind, layout, source)
    out, problems = _rename(frame, kind, layout, source)
    if problems:
        raise InputError(problems)
    extra = layout.header_rows if layout.header_rows is not None else _extra_header_rows(out, kind)
    if extra:
        attrs = dict(out.attrs)
        out = out.iloc[int(extra) :].reset_index(drop=True)
        out.attrs.update(attrs)
        out.attrs["row_offset"] = int(attrs.get("row_offset", 2)) + int(extra)
        out.attrs["header_rows_skipped"] = int(extra)
    if layout.currency:
        out.attrs["currency"] = layout.currency
    return out


def missing_columns(frame: pd.DataFrame, required: Iterable[str], source: str) -> list[Problem]:
    """One problem per missing column, with the closest header names and the header in full."""
    header = [str(c) for c in frame.columns]
    listed = ", ".join(repr(h) for h in header)
    return [
        Problem(
            source,
            int(frame.attrs.get("row_offset", 2)) - 1,
            c,
            f"a column named '{c}'"
            + suggestion(c, header)
            + f"; map it with [columns] or --columns {c}=<file column>"
            f" (the header has {len(header)} columns: {listed})",
        )
        for c in required
        if c not in frame.columns
    ]


# --------------------------------------------------------------------------------------------
# Numbers written as text

# currency sign, code or word → the ISO codes it can stand for
CURRENCY_TOKENS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ["$", "dollar", "dollars", "us$", "usd"],
        frozenset({"USD", "AUD", "CAD", "NZD", "SGD", "HKD", "MXN"}),
    ),
    **dict.fromkeys(["€", "eur", "euro", "euros"], frozenset({"EUR"})),
    **dict.fromkeys(["£", "gbp", "pound", "pounds"], frozenset({"GBP"})),
    **dict.fromkeys(["¥", "yen", "円", "jpy"], frozenset({"JPY", "CNY"})),
    **dict.fromkeys(["kr", "kr."], frozenset({"SEK", "NOK", "DKK", "ISK"})),
    **dict.fromkeys(["chf", "fr.", "sfr"], frozenset({"CHF"})),
    **dict.fromkeys(["₹", "rs", "rs.", "inr", "rupees"], frozenset({"INR"})),
    **dict.fromkeys(["a$", "au$"], frozenset({"AUD"})),
    **dict.fromkeys(["c$", "ca$"], frozenset({"CAD"})),
}
# ISO 4217 codes accepted written beside an amount (any three letters would let typos through)
ISO_CODES = frozenset(
    "USD EUR GBP JPY CNY CHF CAD AUD NZD SEK NOK DKK ISK PLN CZK HUF RON BGN INR BRL MXN ZAR SGD HKD KRW "
    "TRY ILS AED SAR RUB THB MYR IDR PHP TWD VND CLP COP PEN ARS NGN KES EGP".split()
)
_SPLIT = re.compile(
    r"^(?P<sign>[-+]?)\s*(?P<pre>[^\d\s.,+\-][^\d]*?)?\s*(?P<num>[.,]?\d(?:[\d.,'\u00a0\u202f ]*\d)?(?:[eE][-+]?\d+)?)\s*(?P<post>\D*?)\s*$"
)

RULE_WORDS = {
    "number": "a number",
    "money": "an amount (a number; one currency sign, code or word allowed: $1.49, 6 dollars, 12,000)",
    "share": "a share (0.7 or 70%)",
}


def _unit_codes(token: str) -> frozenset[str] | None:
    t = token.strip().casefold()
    if not t:
        return frozenset()
    if t in CURRENCY_TOKENS:
        return CURRENCY_TOKENS[t]
    if t.upper() in ISO_CODES:
        return frozenset({t.upper()})
    return None


def _to_float(num: pd.Series, decimal: str) -> pd.Series:
    """Digits with the file's decimal mark and optional groups of three → float (NaN if not)."""
    d = re.escape(decimal)
    other = "." if decimal == "," else ","
    plain = num.str.fullmatch(rf"\d+(?:{d}\d*)?|{d}\d+|\d+(?:{d}\d*)?[eE][-+]?\d+")
    seps = "".join(re.escape(s) for s in (other, " ", "\u00a0", "\u202f", "'"))
    grouped = num.str.fullmatch(rf"\d{{1,3}}(?:([{seps}])\d{{3}})(?:\1\d{{3}})*(?:{d}\d*)?")
    clean = num.where(plain | grouped)
    clean = clean.str.replace(rf"[{seps}]", "", regex=True).str.replace(decimal, ".", regex=False)
    return pd.to_numeric(clean, errors="coerce").astype(float)


def parse_numbers(
    values: pd.Series, rule: str = "number", *, decimal: str = ".", currency: str | None = None
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Text cells → floats under one rule (see the module docstring).

    Returns ``(values, unreadable, other_currency)``: floats (NaN where empty or not read),
    the cells that break the rule, and the money cells written in a currency other than
    ``currency``.
    """
    # cells a spreadsheet already stored as numbers (a column that also held title text)
    stored = values.map(
        lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool)
    ).astype(bool)
    text = values.astype("string").str.strip().where(~stored, "")
    empty = text.isna() | (text == "")
    parts = text.str.extract(_SPLIT)
    num = parts["num"].astype("string")
    pre = parts["pre"].fillna("").astype("string").str.strip()
    post = parts["post"].fillna("").astype("string").str.strip()
    out = _to_float(num, decimal)
    percent = post == "%"
    units_ok = (pre == "") & (post == "")
    wrong = pd.Series(False, index=values.index)
    if rule == "share":
        units_ok = units_ok | ((pre == "") & percent)
        out = out.where(~percent, out / 100)
    elif rule == "money":
        tokens = pd.concat([pre, post]).dropna().unique()
        codes = {t: _unit_codes(str(t)) for t in tokens}
        known = pre.map(lambda t: codes.get(t) is not None).astype(bool) & post.map(
            lambda t: codes.get(t) is not None
        ).astype(bool)
        one_unit = (pre == "") | (post == "") | (pre.str.casefold() == post.str.casefold())
        units_ok = known & one_unit
        if currency:
            cur = currency.strip().upper()
            unit = pre.where(pre != "", post)
            wrong = (
                units_ok
                & (unit != "")
                & unit.map(lambda t: cur not in (codes.get(t) or frozenset())).astype(bool)
            )
    sign = parts["sign"].fillna("")
    out = out.where(sign != "-", -out)
    bad = (~empty & (out.isna() | ~units_ok)).fillna(True) & ~empty
    wrong = wrong.fillna(False) & ~bad
    out = out.where(~bad & ~wrong)
    if stored.any():
        out = out.where(~stored, pd.to_numeric(values.where(stored), errors="coerce"))
    return out.astype(float), bad.astype(bool), wrong.astype(bool)
