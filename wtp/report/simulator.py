"""simulator.html: the offline price-book simulator, and the inputs file it shares with the CLI.

:func:`write_simulator` writes ``pricing/simulator_inputs.json`` (what ``wtp simulate RUN_DIR``
reads) and ``simulator.html`` (the same record inlined, with ``simulator.js`` from the package:
no network, no external script or font).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

from markupsafe import Markup

from wtp.report import provenance, render


def _inline_json(data) -> Markup:
    """JSON safe inside a <script> element: no ``</`` can close it, no ``<!--`` open a comment."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Markup(
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def write_simulator(run, out: str | Path, *, pages: list | None = None) -> list[Path]:
    """``pricing/simulator_inputs.json`` and ``simulator.html`` for a study run with prices."""
    from wtp.report.study import segment_names, segment_pages, study_meta

    pb = run.price_books
    if pb is None or getattr(pb, "simulator", None) is None or not pb.has_prices:
        return []
    out = Path(out)
    inputs = replace(pb.simulator, seed=int(run.seed))
    (out / "pricing").mkdir(parents=True, exist_ok=True)
    path = out / "pricing" / "simulator_inputs.json"
    path.write_text(
        json.dumps(inputs.to_json(), separators=(",", ":"), ensure_ascii=False), encoding="utf-8"
    )
    script = files("wtp").joinpath("report/simulator.js").read_text(encoding="utf-8")
    meta = study_meta(run)
    html = render(
        "simulator.html.j2", out / "simulator.html", meta=meta, pages=segment_pages(segment_names(run)) if pages is None else pages,
        data=_inline_json(inputs.to_json()), script=Markup(script.replace("</", "<\\/")),
        how={"respondents": sum(s.n for s in inputs.segments), "too_cheap": "a price below someone's quality threshold (their too-cheap answer, or up to their cheap one) stops them buying" if inputs.too_cheap == "exclude" else "ignored (a price below someone's too-cheap answer does not stop them buying)",
             "add_on_noise": inputs.add_on_noise == "conjoint" and inputs.has_conjoint_scale,
             "tier_noise": any(seg.noise_seed is not None for seg in inputs.segments)},
        provenance=provenance(run.seed, run.study.checksums()),
    )  # fmt: skip
    return [path, html]


__all__ = ["write_simulator"]
