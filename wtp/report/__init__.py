"""Self-contained HTML reports: jinja2 templates (autoescaped) with inline CSS and SVG charts.

Each instrument has a section module (``wtp.report.vw``, ``wtp.report.maxdiff`` …) that turns
its result object into template context and charts; this module holds what they share: the
jinja2 environment with the number filters, and :func:`svg` for matplotlib figures.
"""

from __future__ import annotations

import io
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

import wtp

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


def fmt_money(x, currency: str = "", digits: int | None = None) -> str:
    if _is_missing(x):
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 1000 else 2
    text = f"{x:,.{digits}f}"
    return f"{currency} {text}".strip() if currency else text


def fmt_pct(x, digits: int = 1) -> str:
    """A share held 0–1 inside, shown 0–100 % at the edge."""
    if _is_missing(x):
        return "–"
    return f"{100 * x:.{digits}f}%"


def fmt_int(x) -> str:
    if _is_missing(x):
        return "–"
    return f"{round(x):,}"


def slug(name: str) -> str:
    """Contract slug: lower case, runs of anything but a–z0–9 become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower())


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
        env.filters.update(num=fmt_num, money=fmt_money, pct=fmt_pct, int=fmt_int, slug=slug)
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
    # ids must be unique across the several charts of one page
    uid = f"c{next(_COUNTER)}"
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{uid}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{uid}-{m.group(1)})", text)
    text = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{uid}-{m.group(1)}"', text)
    return Markup(text)


def _counter():
    i = 0
    while True:
        i += 1
        yield i


_COUNTER = _counter()


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


def provenance(seed: int | None = None, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "version": wtp.__version__,
        "seed": seed,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs": inputs or {},
    }


def render(template: str, path: str | Path, **context) -> Path:
    """Render a template to ``path`` (UTF-8)."""
    html = environment().get_template(template).render(**context)
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path


def write_design_report(folder: str | Path, *, title: str, lead: str, summary, text: str, seed: int | None = None) -> Path:
    """report.html for a generated design: its summary table and the balance report text."""
    rows = [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in rec.items()} for rec in summary.to_dict("records")]
    return render(
        "design.html.j2", Path(folder) / "report.html", title=title, lead=lead, columns=list(summary.columns),
        rows=rows, text=text, provenance=provenance(seed),
    )


__all__ = ["Markup", "escape", "environment", "render", "svg", "new_figure", "provenance", "slug", "PALETTE"]
