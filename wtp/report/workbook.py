"""The price book as an Excel workbook a client can be handed.

=====================  =========================================================================
sheet                  rows
=====================  =========================================================================
Summary                ``scenarios.csv``: per scenario and segment (and ``total``) customers,
                       conversion, revenue
one per scenario       that scenario's price books (``segment, package, feature, price`` …)
                       with the take-up of each package and add-on when the result has it
Packages               which feature sits in which package, and why
Notes                  the price-book notes and warnings, one per row
=====================  =========================================================================

Money cells carry a number format in the study's currency with the decimals the report uses
(:func:`wtp.report.money_digits`), shares a percentage format, counts a thousands format; every
sheet has its header frozen, an autofilter and fitted column widths.

Text that a spreadsheet would run as a formula (a feature named ``=HYPERLINK(…)``) is written as
a *string cell* with Excel's quote-prefix style: the value stays exactly what the data says — no
apostrophe is added to it — and Excel, LibreOffice and Google Sheets show it as text and never
evaluate it, even after the cell is edited. The CSV tables stay exact.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from wtp.schema import TOTAL

SCENARIO_SHEETS = {"single": "One book for all", "multiple": "One book per segment"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# shares held 0–1 inside; MaxDiff shares (0–100) are plain numbers
PERCENT_COLUMNS = {
    "conversion",
    "share",
    "share_lower",
    "share_upper",
    "appeal",
    "reach",
    "churn_rate",
    "gross_margin",
}
COUNT_COLUMNS = {"customers", "prospects", "customers_lower", "customers_upper"}
MONEY_PREFIXES = (
    "price",
    "revenue",
    "entry_price",
    "added_wtp",
    "wtp",
    "ltv",
    "lifetime_value",
    "arpa",
    "cac",
)
RATIO_COLUMNS = {"step_ratio"}
HEADERS = {
    "scenario": "Scenario",
    "segment": "Segment",
    "package": "Package",
    "price": "Price",
    "price_book": "Price book",
    "customers": "Customers",
    "conversion": "Conversion",
    "revenue": "Revenue",
    "revenue_lower": "Revenue, low (90%)",
    "revenue_upper": "Revenue, high (90%)",
    "prospects": "Prospects",
    "entry_price": "Entry price",
    "share": "Share",
    "feature": "Feature",
    "label": "Feature name",
    "reason": "Why here",
    "note": "Note",
    "step_ratio": "Step ratio",
    "added_wtp": "WTP of added features",
    "in_range": "Within acceptable range",
    "ltv": "LTV",
    "lifetime_value": "Lifetime value",
}
MAX_WIDTH = 60
WRAP_FROM = 40  # text columns wider than this wrap instead of stretching


def _kind(column: str, sheet: str) -> str:
    c = column.lower()
    if sheet == "Packages" and c in ("share", "lower", "upper"):
        return "number1"  # MaxDiff probability-scaled share, 0–100
    if c in PERCENT_COLUMNS or (c.startswith("share_") and not c.endswith("_source")):
        return "percent"
    if c in COUNT_COLUMNS:
        return "count"
    if c in RATIO_COLUMNS:
        return "ratio"
    if c.startswith(MONEY_PREFIXES) and not c.endswith(("_source", "_change_pct")):
        return "money"
    return "text"


def money_format(currency: str, digits: int) -> str:
    decimals = "." + "0" * digits if digits else ""
    suffix = f' "{currency}"' if currency else ""
    return f"#,##0{decimals}{suffix}"


def _sheet_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\]", "-", str(name))[:31] or "Sheet"
    out, k = base, 1
    while out.lower() in used:
        k += 1
        out = f"{base[: 31 - len(str(k)) - 1]} {k}"
    used.add(out.lower())
    return out


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def write_frame(ws, frame: pd.DataFrame, *, currency: str, digits: int) -> None:
    """One table on a sheet: header row, typed cells, formats, widths, frozen header, filter."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    formats = {
        "money": money_format(currency, digits),
        "percent": "0.0%",
        "count": "#,##0",
        "ratio": "0.00",
        "number1": "0.0",
    }
    columns = [str(c) for c in frame.columns]
    kinds = [_kind(c, ws.title) for c in columns]
    header_font = Font(bold=True)
    fill = PatternFill("solid", fgColor="EEF2F7")
    for j, c in enumerate(columns, start=1):
        cell = ws.cell(row=1, column=j)
        _set_text(cell, HEADERS.get(c, c.replace("_", " ").capitalize()))
        cell.font, cell.fill = header_font, fill
        cell.alignment = Alignment(vertical="top", wrap_text=True)
    widths = [len(str(ws.cell(row=1, column=j).value)) for j in range(1, len(columns) + 1)]
    bold_rows = []
    for i, row in enumerate(frame.itertuples(index=False), start=2):
        for j, (value, kind) in enumerate(zip(row, kinds, strict=True), start=1):
            cell = ws.cell(row=i, column=j)
            v = _plain(value)
            if v is None:
                continue
            if isinstance(v, str):
                _set_text(cell, v)
                shown = v
            else:
                cell.value = v
                if kind != "text" and isinstance(v, int | float) and not isinstance(v, bool):
                    cell.number_format = formats[kind]
                shown = _shown(v, kind, digits, currency)
            widths[j - 1] = max(widths[j - 1], len(shown))
        if "segment" in columns and row[columns.index("segment")] == TOTAL:
            bold_rows.append(i)
    for i in bold_rows:
        for j in range(1, len(columns) + 1):
            ws.cell(row=i, column=j).font = header_font
    for j, w in enumerate(widths, start=1):
        letter = get_column_letter(j)
        ws.column_dimensions[letter].width = min(MAX_WIDTH, w + 2)
        if w > WRAP_FROM:
            for (cell,) in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    if len(frame):
        ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(frame) + 1}"


def _shown(v, kind: str, digits: int, currency: str) -> str:
    if kind == "money":
        return f"{v:,.{digits}f} {currency}".strip()
    if kind == "percent":
        return f"{100 * v:.1f}%"
    if kind == "count":
        return f"{v:,.0f}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _set_text(cell, text: str) -> None:
    """A string cell that no spreadsheet evaluates, its text exactly as given."""
    cell.value = text
    if text.startswith(_FORMULA_START):
        cell.data_type = "s"  # openpyxl would otherwise store "=…" as a formula
        cell.quotePrefix = True  # and Excel keeps it text when someone edits the cell


def _scenario_table(price_books, scenario: str) -> pd.DataFrame:
    books = price_books.price_books
    rows = books[books["scenario"] == scenario].drop(columns=["scenario"])
    take_up = getattr(price_books, "take_up", None)
    if (
        isinstance(take_up, pd.DataFrame)
        and len(take_up)
        and {"scenario", "segment", "package"} <= set(take_up.columns)
    ):
        extra = take_up[take_up["scenario"] == scenario].drop(columns=["scenario"])
        extra = extra.drop(
            columns=[
                c for c in extra.columns if c in rows.columns and c not in ("segment", "package")
            ]
        )
        rows = rows.merge(extra, on=["segment", "package"], how="left")
    return _with_add_on_take_up(rows, getattr(price_books, "add_ons", None), scenario)


def _with_add_on_take_up(rows: pd.DataFrame, add_ons, scenario: str) -> pd.DataFrame:
    """The add-on rows' take-up (pricing/add_ons.csv) in the columns the packages' fill."""
    if not isinstance(add_ons, pd.DataFrame) or not len(add_ons) or "feature" not in rows.columns:
        return rows.reset_index(drop=True)
    a = add_ons[add_ons["scenario"] == scenario].set_index(["segment", "feature"])
    rows = rows.reset_index(drop=True)
    is_add_on = rows["package"] == "add-on"
    keys = pd.MultiIndex.from_arrays([rows["segment"], rows["feature"].astype(str)])
    for c in ("share", "customers", "revenue", "revenue_lower", "revenue_upper"):
        if c not in a.columns:
            continue
        got = a[c].reindex(keys).to_numpy(dtype=float)
        rows[c] = np.where(is_add_on, got, rows[c] if c in rows.columns else np.nan)
    return rows


def write_price_book_workbook(
    price_books, path: str | Path, *, currency: str = "", digits: int = 2
) -> Path:
    """Write ``price_book.xlsx``: a summary, a sheet per scenario, the packages and the notes."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    used: set[str] = set()

    def add(name: str, frame: pd.DataFrame) -> None:
        write_frame(
            wb.create_sheet(_sheet_name(name, used)), frame, currency=currency, digits=digits
        )

    scenarios = price_books.scenarios
    add("Summary", scenarios)
    books = price_books.price_books
    for scenario in dict.fromkeys(books["scenario"]):
        add(SCENARIO_SHEETS.get(scenario, str(scenario)), _scenario_table(price_books, scenario))
    add("Packages", price_books.packages)
    notes = [("note", str(n)) for n in getattr(price_books, "notes", ())]
    notes += [("warning", str(w)) for w in getattr(price_books, "warnings", ())]
    add("Notes", pd.DataFrame(notes, columns=["kind", "text"]))
    from wtp.report import generated_at

    # the workbook's own dates follow SOURCE_DATE_EPOCH like the HTML's
    when = generated_at().replace(tzinfo=None)
    wb.properties.created = wb.properties.modified = when
    path = Path(path)
    buffer = io.BytesIO()
    wb.save(buffer)
    path.write_bytes(_reproducible_zip(buffer.getvalue(), when))
    return path


def _reproducible_zip(data: bytes, when) -> bytes:
    """The saved workbook with every zip entry dated ``when`` and ``dcterms:modified`` set to it:
    openpyxl stamps both with the clock at save time, so the same run would differ byte-wise."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                    rb"\g<1>" + stamp.encode() + rb"\g<2>",
                    body,
                )
            info = zipfile.ZipInfo(
                item.filename, date_time=max(when.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = item.external_attr
            dst.writestr(info, body)
    return out.getvalue()


__all__ = ["write_price_book_workbook", "write_frame", "money_format", "SCENARIO_SHEETS"]
