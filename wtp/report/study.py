"""The study report: ``index.html`` (overview) and one price-book proposal page per segment."""

from __future__ import annotations

from pathlib import Path

from wtp.report import provenance, render, slug


def _meta(study) -> dict:
    return {"name": study.name, "currency": study.currency, "price_unit": study.price_unit, "period": study.period}


def segment_names(run) -> list[str]:
    """Segments known to any stage, in the order the study gives them (never the reserved 'all')."""
    names: list[str] = []
    study = run.study
    if study.segments is not None:
        names += study.segments["segment"].tolist()
    for frame in (study.respondents, study.vw, study.maxdiff, study.conjoint):
        if frame is not None and "segment" in frame.columns:
            names += frame["segment"].dropna().tolist()
    names = [n for n in dict.fromkeys(names) if n != "all"]
    return names or ["all"]


def write_pages(run, out: Path) -> list[Path]:
    from wtp.report.vw import section_context as vw_context

    study = run.study
    meta = _meta(study)
    prov = provenance(run.seed, study.checksums())
    segments = segment_names(run)
    pages = [{"segment": s, "href": f"segment-{slug(s)}.html"} for s in segments]
    common = {"meta": meta, "provenance": prov, "pages": pages, "run": run, "skipped": run.skipped, "attention": run.attention}
    written = []
    vw_all = vw_context(run.vw, meta["currency"], ["all"]) if run.vw is not None else None
    written.append(render("index.html.j2", out / "index.html", vw=vw_all, **common))
    for page in pages:
        s = page["segment"]
        vw_seg = None
        if run.vw is not None and s in run.vw.segments:
            vw_seg = vw_context(run.vw, meta["currency"], [s])
        written.append(render("segment.html.j2", out / page["href"], segment=s, vw=vw_seg, **common))
    return written
