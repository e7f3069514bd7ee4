"""The whole study, end to end: ingest → instruments → segments → price books → report.

:func:`run_study` runs every stage the study's files allow and returns their result objects;
:func:`write_study` writes the contract's folders, tables and HTML pages. Stages take earlier
stages' result objects; only ingest reads files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from numpy.random import Generator

from wtp.progress import heartbeat
from wtp.randomness import describe, stage_rng
from wtp.schema import ALL
from wtp.study import Study, load_study

Progress = Callable[[str], None]


class SkipStage(Exception):
    """A stage that cannot run on what the earlier stages produced; the message says why."""


@dataclass(frozen=True)
class StudyRun:
    """Result objects of every stage that ran, and what did not run and why.

    ``generators`` records, per stage that ran, how its random numbers were seeded
    (:func:`wtp.randomness.describe`): every stage draws from its own child of ``seed``.
    """

    study: Study
    seed: int
    results: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # stage → reason
    timings: dict[str, float] = field(default_factory=dict)
    attention: list[str] = field(default_factory=list)  # things the analyst should look at
    generators: dict[str, str] = field(default_factory=dict)  # stage → how its Generator was made

    def sample_sizes(self):
        """``segment, instrument, n, min_n, small_sample``: respondents behind each segment's
        numbers per instrument and the study's minimum (``[sample]``); a small segment gets no
        price book of its own."""
        from wtp.sample import sample_sizes

        results = {"vw": self.vw, "maxdiff": self.maxdiff, "conjoint": self.conjoint}
        return sample_sizes(results, self.study.sample)

    @property
    def vw(self):
        return self.results.get("vw")

    @property
    def maxdiff(self):
        return self.results.get("maxdiff")

    @property
    def conjoint(self):
        return self.results.get("conjoint")

    @property
    def segments(self):
        return self.results.get("segments")

    @property
    def price_books(self):
        return self.results.get("price_books")

    def summary(self):
        """One row per stage: ``stage, status, seconds, note`` (why a stage did not run)."""
        import pandas as pd

        rows = [
            {"stage": s, "status": "ran", "seconds": t, "note": ""} for s, t in self.timings.items()
        ]
        rows += [
            {"stage": s, "status": "not run", "seconds": float("nan"), "note": why}
            for s, why in self.skipped.items()
        ]
        return pd.DataFrame(rows, columns=["stage", "status", "seconds", "note"])

    def to_frame(self):
        """The stage table; each stage's own tables are on its result (``run.vw.price_points`` …)."""
        return self.summary()


def _config(study: Study, fast: bool):
    """The study's typed settings (:mod:`wtp.settings`); with ``--fast`` the first-look
    defaults where a key is unset."""
    if not fast:
        return study.config
    from wtp.settings import parse_settings

    return parse_settings(study.settings, source=str(study.folder / "study.toml"), fast=True)


def _stage_vw(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    from wtp.sample import flag_small_samples
    from wtp.vanwestendorp import parse_calibration, van_westendorp

    cfg = _config(study, fast).van_westendorp
    result = van_westendorp(
        study.vw,
        inconsistent=cfg.inconsistent,
        ties=cfg.ties,
        cheap_rule=cfg.cheap_rule,
        plateau=cfg.plateau,
        nms_scale=cfg.nms_scale,
        nms_calibration=parse_calibration(
            cfg.nms_calibration, "study.toml [van_westendorp] nms_calibration"
        ),
        bootstrap=cfg.bootstrap,
        rng=rng,
    )
    return flag_small_samples(result, "vw", study.sample.threshold("vw"))


def _stage_segments(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    from dataclasses import replace

    from wtp.segments import cohorts, score_segments, score_settings, trend

    cfg = study.config
    cohort_result = None
    if study.customers is not None:
        cohort_result = cohorts(
            study.customers,
            period=study.period,
            as_of=study.as_of,
            export_date=cfg.study.export_date,
        )
        for message in cohort_result.warnings:
            say(f"segments: {message}")
    scores = score_segments(
        study.segments,
        period=study.period,
        as_of=study.as_of,
        cohort_result=cohort_result,
        **score_settings(cfg.segments),
    )
    if study.customers is not None:
        scores = replace(
            scores, trend=trend(study.customers, period=study.period, as_of=cohort_result.as_of)
        )
    return scores


def _stage_maxdiff(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    from wtp.hb import sampler_settings, unconverged_advice
    from wtp.maxdiff import estimate_maxdiff
    from wtp.settings import sampler_keys

    # a first look (--fast) uses the aggregate logit: seconds instead of a sampler run
    cfg = _config(study, fast).maxdiff
    method = cfg.method
    # the sampler's own defaults (sample until converged, checks from 200 draws per chain) apply
    # unless study.toml sets a key
    hb = sampler_settings(sampler_keys(cfg), "study.toml [maxdiff]")
    hb.pop("save_posterior", None)
    result = estimate_maxdiff(
        study.maxdiff,
        method=method,
        rng=rng,
        labels=study.item_labels or None,
        progress=_reporter(say),
        **hb,
    )
    if method == "hb" and not result.converged and say is not None:
        say("maxdiff: NOT converged. " + unconverged_advice(result.diagnostics))
    from wtp.sample import flag_small_samples

    return flag_small_samples(result, "maxdiff", study.sample.threshold("maxdiff", method))


def _reporter(say: Progress | None):
    """The sampler's progress lines go where the pipeline's own messages go (stderr)."""
    from wtp.progress import Reporter, quiet

    return quiet() if say is None else Reporter(prefix="    ")


def _stage_turf(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    md = results.get("maxdiff")
    if md is None or md.individual_utilities.empty:
        raise SkipStage(
            "needs individual utilities from hierarchical Bayes (the MaxDiff method here gives none)"
        )
    from wtp.turf import turf

    cfg = _config(study, fast).maxdiff
    k = min(cfg.turf_size, len(md.items))
    weights = None
    if "weight" in study.maxdiff.columns:
        weights = study.maxdiff.drop_duplicates("respondent_id").set_index("respondent_id")[
            "weight"
        ]
    return turf(md.individual_utilities, k, reach=cfg.turf_reach, weights=weights)


def _stage_conjoint(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    from wtp.conjoint import conjoint_levels, conjoint_numeric, estimate_conjoint
    from wtp.hb import sampler_settings
    from wtp.sample import flag_small_samples
    from wtp.settings import sampler_keys
    from wtp.vanwestendorp import respondent_price_levels

    cfg = _config(study, fast).conjoint
    # individual (HB) part-worths by default: the aggregate MNL's money values are biased when
    # respondents differ (10-23% too high on a real camera study); the MNL under --fast, and
    # as the fallback when the sampler has not converged within its time budget
    method = cfg.method
    if say is not None:
        say(
            f"conjoint: {'aggregate MNL' if method == 'mnl' else 'hierarchical Bayes (individual part-worths)'}"
            + (" (--fast)" if fast and method == "mnl" else "")
        )
    hb = sampler_settings(sampler_keys(cfg), "study.toml [conjoint]")
    hb.pop("save_posterior", None)

    # MNL: each respondent's prices against their own Van Westendorp price level give the
    # noise of their choices in money, which the segment's one coefficient overstates
    levels = (
        respondent_price_levels(results["vw"], study.vw)
        if results.get("vw") is not None and study.vw is not None
        else None
    )

    def estimate(how: str):
        # the sampler reports its own progress; the MNL (and its price-level fits, one per
        # segment, seconds for thousands of respondents) gets the stages' heartbeat
        beat = (
            heartbeat("conjoint MNL", say, every=8.0)
            if how == "mnl" and say is not None
            else contextlib.nullcontext()
        )
        with beat:
            return estimate_conjoint(
                study.conjoint,
                levels=conjoint_levels(study.config) or None,
                method=how,
                numeric=conjoint_numeric(study.config),
                coding=cfg.coding,
                price=cfg.price,
                rng=rng,
                se=cfg.se,
                progress=_reporter(say) if how == "hb" else False,
                price_levels=levels,
                **(hb if how == "hb" else {}),
            )

    result = estimate(method)
    chosen = "method" in study.settings.get("conjoint", {})  # set in study.toml, not defaulted
    unsettled = None
    if method == "hb":
        d = result.diagnostics.attrs.get("hb", {})
        if not d.get("converged", False):
            unsettled = d.get("limiting") or "not converged"
            if say is not None:
                say(
                    f"conjoint: hierarchical Bayes did not converge ({unsettled}); pricing from the aggregate MNL"
                )
            result = estimate("mnl")
    why = conjoint_method_reason(method, fast=fast, chosen=chosen, unsettled=unsettled)
    result = dataclasses.replace(result, method_reason=why)
    return flag_small_samples(result, "conjoint", study.sample.threshold("conjoint"))


def conjoint_method_reason(
    method: str, *, fast: bool, chosen: bool, unsettled: str | None = None
) -> str:
    """Why ``wtp run`` priced from this conjoint model (shown in the report)."""
    if unsettled is not None:
        return (
            f"Hierarchical Bayes did not converge within its time budget ({unsettled}), so this run "
            "prices from the aggregate MNL with respondent-clustered intervals; its money values average "
            "over respondents and can be biased when they differ. A longer [conjoint] time_budget in "
            "study.toml gives the sampler more time."
        )
    if chosen:
        return f"Conjoint estimated by {'the aggregate MNL' if method == 'mnl' else 'hierarchical Bayes'} as set in study.toml ([conjoint] method)."
    if fast:
        return (
            "--fast: the conjoint is the aggregate MNL (seconds instead of a sampler run). Its money values "
            "average over respondents and can be biased when they differ."
        )
    return (
        "Conjoint estimated by hierarchical Bayes (individual part-worths, sampled until converged): "
        "willingness to pay and take-up come from each respondent's own part-worths, which avoids the "
        "aggregate MNL's heterogeneity bias (on a real study it overstated every feature by 10–23%)."
    )


def _stage_simulator(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    """The conjoint demand curve the report draws, computed here so that writing draws nothing."""
    from wtp.conjoint import simulator_tables

    return simulator_tables(results["conjoint"], rng=rng)


def _stage_price_books(study: Study, rng: Generator, fast: bool, results: dict, say: Progress):
    from wtp.pricing import build_price_books

    return build_price_books(
        vw=results.get("vw"),
        maxdiff=results.get("maxdiff"),
        conjoint=results.get("conjoint"),
        segments=results.get("segments"),
        study=study,
        rng=rng,
    )


STAGES: list[tuple[str, str, Callable]] = [
    # (stage, the study input it needs, function)
    ("vw", "vw", _stage_vw),
    ("maxdiff", "maxdiff", _stage_maxdiff),
    ("turf", "maxdiff", _stage_turf),
    ("conjoint", "conjoint", _stage_conjoint),
    ("simulator", "conjoint", _stage_simulator),
    ("segments", "segments", _stage_segments),
    # packages and prices run on whatever exists and say what was missing
    ("price_books", "", _stage_price_books),
]


# stages that write their own progress lines (the hierarchical Bayes sampler)
SELF_REPORTING = {"maxdiff", "conjoint"}


def run_study(
    study: Study | str | Path,
    *,
    seed: int = 0,
    fast: bool = False,
    progress: Progress | None = None,
) -> StudyRun:
    """Run every stage the study allows. Bad input raises :class:`~wtp.errors.InputError` first."""
    say = progress or (lambda _msg: None)
    quiet_run = progress is None
    if not isinstance(study, Study):
        say("reading and validating the study")
        study = load_study(study)
    _require_data(study)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    timings: dict[str, float] = {}
    generators: dict[str, str] = {}
    for name, needs, fn in STAGES:
        if needs and getattr(study, needs, None) is None:
            skipped[name] = f"no {needs} file in the study"
            continue
        say(f"{name}: running")
        t0 = time.perf_counter()
        try:
            if name in SELF_REPORTING:
                results[name] = fn(
                    study, stage_rng(seed, name), fast, results, None if quiet_run else say
                )
            else:
                with heartbeat(name, say, every=8.0):
                    results[name] = fn(study, stage_rng(seed, name), fast, results, say)
        except SkipStage as why:
            skipped[name] = str(why)
            continue
        generators[name] = describe(seed, name)
        timings[name] = time.perf_counter() - t0
        say(f"{name}: done in {timings[name]:.1f} s")
    run = StudyRun(
        study=study,
        seed=seed,
        results=results,
        skipped=skipped,
        timings=timings,
        generators=generators,
    )
    return replace(run, attention=_attention(run))


def _require_data(study: Study) -> None:
    """A study with none of the files a stage runs on would give a result set computed from
    nothing that looks complete: bad input (exit 2), before anything is written. A study with
    some of them runs on what is there (contract §1)."""
    needed = list(dict.fromkeys(needs for _name, needs, _fn in STAGES if needs))
    if any(getattr(study, needs, None) is not None for needs in needed):
        return
    from wtp.errors import InputError, Problem
    from wtp.study import DEFAULT_FILES

    keys = {"vw": "van_westendorp"}
    wanted = ", ".join(f"{keys.get(n, n)} ({DEFAULT_FILES[keys.get(n, n)]})" for n in needed)
    found = (
        "only " + ", ".join(Path(p).name for p in study.files.values())
        if study.files
        else "no data files"
    )
    raise InputError(
        Problem(
            str(study.folder / "study.toml"),
            None,
            "data",
            f"at least one of {wanted} named in [data] or present in the study folder; "
            "customers.csv alone is for wtp explore",
            found,
        )
    )


def _attention(run: StudyRun) -> list[str]:
    """What the analyst should look at, in stage order (a result's small-sample warning is left
    to the sample-size lines, which say it once per instrument and segment)."""
    from wtp.sample import is_small_sample_warning

    attention: list[str] = []
    pb = run.price_books
    if pb is not None:
        attention.extend(f"Price books: {w}" for w in pb.warnings)
        attention.extend(f"Price books: {n}" for n in pb.notes)
    md = run.maxdiff
    if md is not None and not md.converged:
        if md.method == "hb":
            from wtp.hb import unconverged_advice

            attention.append("MaxDiff: " + unconverged_advice(md.diagnostics))
        else:
            attention.append(
                "MaxDiff: the estimation did NOT converge; see maxdiff/diagnostics.json before using the shares."
            )
    cj = run.conjoint
    if (
        cj is not None
        and cj.method == "hb"
        and cj.diagnostics is not None
        and "ok" in cj.diagnostics.columns
        and not cj.diagnostics["ok"].all()
    ):
        from wtp.hb import unconverged_advice

        attention.append("Conjoint: " + unconverged_advice(cj.diagnostics.attrs.get("hb", {})))
    if cj is not None:
        attention.extend(f"Conjoint: {w}" for w in cj.warnings if not is_small_sample_warning(w))
    seg = run.segments
    if seg is not None:
        attention.extend(f"Cohorts: {w}" for w in getattr(seg.cohorts, "warnings", ()))
        for rec in seg.flags.to_dict("records"):
            attention.append(f"Segments: {rec['segment']} is {rec['flag']}: {rec['reason']}")
    vw = run.vw
    if vw is not None:
        pp = vw.price_points
        excl = int(pp.loc[pp.segment == ALL, "n_excluded"].iloc[0])
        n_in = int(pp.loc[pp.segment == ALL, "n_in"].iloc[0])
        if excl:
            attention.append(
                f"Van Westendorp: {excl} of {n_in} respondents gave inconsistent answers and were left out."
            )
        for w in vw.warnings:
            if "do not cross" in w:
                attention.append(f"Van Westendorp: {w}")
    if md is not None:
        attention.extend(f"MaxDiff: {w}" for w in md.warnings if not is_small_sample_warning(w))
    sizes = run.sample_sizes()
    names = {"vw": "Van Westendorp", "maxdiff": "MaxDiff", "conjoint": "Conjoint"}
    for rec in sizes[sizes.small_sample].to_dict("records"):
        attention.append(
            f"{names[rec['instrument']]}: segment {rec['segment']} has {rec['n']} respondents, below the minimum of "
            f"{rec['min_n']} ([sample] min_n_{rec['instrument']}): small sample, its numbers are fragile."
        )
    for seg_name in run.study.unpriced_segments:
        attention.append(
            f"Segments: {seg_name} is in the segments file but no survey respondent is in it: it is not priced."
        )
    return attention


def write_study(run: StudyRun, out: Path) -> list[Path]:
    """Write every stage's tables and reports into ``out`` (the caller makes it atomic)."""
    from wtp.report.study import study_meta, write_pages

    out = Path(out)
    written: list[Path] = []
    inputs = run.study.checksums()
    meta = study_meta(run)
    if run.vw is not None:
        from wtp.report.vw import write_outputs as write_vw

        (out / "vw").mkdir(parents=True, exist_ok=True)
        write_vw(run.vw, out / "vw", meta=meta, seed=run.seed, inputs=inputs)
        written.append(out / "vw")
    if run.maxdiff is not None:
        from wtp.report.maxdiff import write_outputs as write_maxdiff

        (out / "maxdiff").mkdir(parents=True, exist_ok=True)
        write_maxdiff(
            run.maxdiff,
            out / "maxdiff",
            meta=meta,
            seed=run.seed,
            inputs=inputs,
            turf_result=run.results.get("turf"),
            save_posterior=run.study.config.maxdiff.save_posterior,
        )
        written.append(out / "maxdiff")
    if run.conjoint is not None:
        from wtp.report.conjoint import write_outputs as write_conjoint

        (out / "conjoint").mkdir(parents=True, exist_ok=True)
        write_conjoint(
            run.conjoint,
            out / "conjoint",
            meta=meta,
            seed=run.seed,
            inputs=inputs,
            tables=run.results.get("simulator"),
        )
        written.append(out / "conjoint")
    if run.segments is not None:
        from wtp.report import provenance
        from wtp.report.segments import write_outputs as write_segments

        (out / "segments").mkdir(parents=True, exist_ok=True)
        write_segments(
            out / "segments",
            run.segments,
            run.segments.cohorts,
            meta=meta,
            provenance=provenance(run.seed, inputs),
        )
        written.append(out / "segments")
    if run.price_books is not None:
        from wtp.report.pricing import write_outputs as write_pricing

        write_pricing(run.price_books, out)
        written.append(out / "price_books.csv")
        from wtp.report.workbook import write_price_book_workbook

        written.append(
            write_price_book_workbook(
                run.price_books,
                out / "price_book.xlsx",
                currency=meta["currency"],
                digits=meta["money_digits"],
            )
        )
        from wtp.report.simulator import write_simulator

        written += write_simulator(run, out)
    from wtp.io import write_csv

    write_csv(run.sample_sizes(), out / "sample_sizes.csv")
    written.append(out / "sample_sizes.csv")
    written += write_pages(run, out)
    # every command leaves a report.html; for a study it is the overview
    shutil.copyfile(out / "index.html", out / "report.html")
    return written


def demo_study_path() -> Path:
    """The demo study shipped inside the package (``surveys/demo`` in the repository)."""
    from importlib.resources import files

    return Path(str(files("wtp") / "data" / "demo"))


def simulator_inputs_for(
    source: str | Path,
    *,
    seed: int | None = None,
    fast: bool = False,
    progress: Progress | None = None,
):
    """The simulator inputs of a run folder (``pricing/simulator_inputs.json``, as ``wtp run``
    wrote it) or of a study folder (the pipeline run through the price-book stage)."""
    from dataclasses import replace

    from wtp.errors import InputError, Problem
    from wtp.pricing.simulator_inputs import read_inputs

    source = Path(source)
    saved = source / "pricing" / "simulator_inputs.json"
    if saved.is_file():
        inputs = read_inputs(saved)
        return inputs if seed is None else replace(inputs, seed=seed)
    if not (source / "study.toml").is_file() and not (
        source.is_file() and source.suffix == ".toml"
    ):
        raise InputError(
            Problem(
                str(source),
                None,
                None,
                "a run folder (with pricing/simulator_inputs.json, written by `wtp run`) or a study folder (with study.toml)",
                "neither",
            )
        )
    run = run_study(source, seed=seed or 0, fast=fast, progress=progress)
    pb = run.price_books
    if pb is None or getattr(pb, "simulator", None) is None or not pb.has_prices:
        why = (
            run.skipped.get("price_books")
            or "no tier could be priced (see the price-book warnings)"
        )
        raise InputError(
            Problem(
                str(source),
                None,
                None,
                "a study whose price-book stage prices at least one package",
                why,
            )
        )
    return replace(pb.simulator, seed=seed or 0)


def simulate_book_file(
    source: str | Path,
    book: str | Path,
    *,
    rule: str = "first-choice",
    seed: int | None = None,
    fast: bool = False,
    progress: Progress | None = None,
):
    """take_up.csv and scenarios.csv of the books in a scenario file (the file simulator.html
    exports), on a run folder's saved inputs or a study folder's pipeline run."""
    from wtp.pricing.simulator_inputs import read_book_file, simulate_books

    inputs = simulator_inputs_for(source, seed=seed, fast=fast, progress=progress)
    return simulate_books(inputs, read_book_file(book, inputs), rule=rule)
