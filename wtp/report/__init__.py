"""Self-contained HTML reports: jinja2 templates (autoescaped) with inline CSS and SVG charts.

Each instrument has a section module (``wtp.report.vw``, ``wtp.report.maxdiff`` …) that turns
its result object into template context and charts; this module holds what they share: the
jinja2 environment with the number filters, and :func:`svg` for matplotlib figures.
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from markupsafe import Markup, escape

import wtp
from wtp.schema import ALL, TOTAL, slug

_ENV: Environment | None = None


def _is_missing(x) -> bool:
    try:
        return x is None or (isinstance(x, float) and math.isnan(x))
    except TypeError:
        return False


def fmt_num(x, digits: int = 2) -> str:
    if _is_missing(x):
        return "–"
    return f"{x:,.{digits}f}"


# money under this typical price is shown with cents, from it up in whole units
CENTS_BELOW = 50.0


def money_digits(prices) -> int:
    """Decimals for every money figure of one report, fitted to the study's price level: 2 when
    the median of ``prices`` (its price points, entry prices or ARPA) is under
    :data:`CENTS_BELOW` (cents matter at 24.99), else 0 — so an LTV of 639.60 never sits beside
    one of 1,896."""
    values = [
        abs(float(v))
        for v in prices
        if v is not None and isinstance(v, numbers.Real) and math.isfinite(v)
    ]
    if not values:
        return 2
    values.sort()
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return 2 if median < CENTS_BELOW else 0


def fmt_money(x, currency: str = "", digits: int | None = None) -> str:
    """Money with thousands separators; ``digits`` from :func:`money_digits` (default 2)."""
    if _is_missing(x):
        return "–"
    text = f"{x:,.{2 if digits is None else digits}f}"
    return f"{currency} {text}".strip() if currency else text


@pass_context
def _money_filter(context, x, currency: str = "", digits: int | None = None) -> str:
    """The ``money`` filter: digits given, else the report's ``meta.money_digits``."""
    if digits is None:
        meta = context.get("meta")
        if isinstance(meta, dict):
            digits = meta.get("money_digits")
    return fmt_money(x, currency, digits)


def fmt_pct(x, digits: int = 1) -> str:
    """A share held 0–1 inside, shown 0–100 % at the edge."""
    if _is_missing(x):
        return "–"
    return f"{100 * x:.{digits}f}%"


def fmt_int(x) -> str:
    if _is_missing(x):
        return "–"
    return f"{round(x):,}"


def plural(x, singular: str, plural_form: str | None = None) -> str:
    """``1 customer``, ``0 customers``, ``2.5 customers`` → the count as :func:`fmt_int` shows it
    and the noun that agrees with that shown number (so 0.6 rounds to ``1 customer``)."""
    if _is_missing(x):
        return f"– {plural_form or singular + 's'}"
    shown = fmt_int(x)
    return f"{shown} {singular if shown == '1' else (plural_form or singular + 's')}"


def plain(x):
    """numpy scalars → Python, NaN and infinities → None (the filters show None as '–')."""
    if hasattr(x, "item") and not isinstance(x, (list, tuple, dict, str)):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            return x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def records(frame) -> list[dict[str, Any]]:
    """Rows of a DataFrame as plain dicts for templates (see :func:`plain`); None or empty → []."""
    if frame is None or frame.empty:
        return []
    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def environment() -> Environment:
    global _ENV
    if _ENV is None:
        env = Environment(
            loader=PackageLoader("wtp", "report/templates"),
            autoescape=select_autoescape(["html", "j2", "html.j2"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            num=fmt_num, money=_money_filter, pct=fmt_pct, int=fmt_int, slug=slug, plural=plural
        )
        env.globals.update(ALL=ALL, TOTAL=TOTAL)
        _ENV = env
    return _ENV


def svg(fig) -> Markup:
    """A matplotlib figure as inline SVG markup (closed after rendering).

    Text in the figure comes from data (item labels, segment names); matplotlib writes it as
    SVG text nodes with XML escaping, so it cannot inject markup.
    """
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # the metadata block carries a creation date (breaks reproducible reports) and nothing else
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # ids must be unique across the several charts of one page, and the same for the same chart
    # in every run (a process-wide counter would make a second report in one process differ)
    uid = "c" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{uid}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{uid}-{m.group(1)})", text)
    text = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{uid}-{m.group(1)}"', text)
    return Markup(text)


def new_figure(width: float = 7.0, height: float = 3.6):
    """A figure in the house style (matplotlib imported lazily, Agg backend, SVG text as text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "svg.hashsalt": "wtp",
        }
    )
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


PALETTE = ["#1f5fa8", "#d9534f", "#2e9e6a", "#e39b22", "#7a4fb3", "#5b6b7a", "#c2477f", "#17a2b8"]


def generated_at(now: datetime | None = None) -> datetime:
    """When a report was made: ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds
    convention, so the same seed writes the same bytes), else ``now`` (default: the clock)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError, OSError):
            raise ValueError(
                f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}"
            ) from None
    return now or datetime.now(UTC)


def provenance(
    seed: int | None = None,
    inputs: dict[str, str] | None = None,
    *,
    generated: datetime | None = None,
) -> dict[str, Any]:
    """Version, seed, generation time (:func:`generated_at`) and input checksums for a footer."""
    return {
        "version": wtp.__version__,
        "seed": seed,
        "date": generated_at(generated).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs": inputs or {},
    }


def render(template: str, path: str | Path, **context) -> Path:
    """Render a template to ``path`` (UTF-8)."""
    html = environment().get_template(template).render(**context)
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path


def write_design_report(
    folder: str | Path, *, title: str, lead: str, summary, text: str, seed: int | None = None
) -> Path:
    """report.html for a generated design: its summary table and the balance report text."""
    rows = [
        {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in rec.items()}
        for rec in summary.to_dict("records")
    ]
    return render(
        "design.html.j2",
        Path(folder) / "report.html",
        title=title,
        lead=lead,
        columns=list(summary.columns),
        rows=rows,
        text=text,
        provenance=provenance(seed),
    )


__all__ = [
    "Markup",
    "escape",
    "environment",
    "render",
    "svg",
    "new_figure",
    "provenance",
    "slug",
    "PALETTE",
]
