"""The ``wtp`` command line: a thin layer over the Python API.

Commands read and validate input, call the analysis, write tables and a report into ``--out``
(through a temporary folder, so a failure never leaves a half-written result set), and print a
short summary. Heavy libraries (pymc, matplotlib) are imported inside the commands that need
them so ``wtp --help`` answers at once.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from wtp.errors import InputError, printable
from wtp.settings import SECTIONS, StudySettings

# ArviZ 0.23 announces its coming refactor once a day on import, in the middle of an HB run's
# progress lines; it is about ArviZ's API, not the analyst's study
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)

app = typer.Typer(
    name="wtp",
    help="Pricing and willingness-to-pay research: Van Westendorp, MaxDiff, conjoint, segments, price books.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import wtp

        typer.echo(f"wtp {wtp.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Pricing and willingness-to-pay research: Van Westendorp, MaxDiff, conjoint, segments, price books."""


design_app = typer.Typer(
    help="Generate survey designs a survey tool can field.", no_args_is_help=True
)
app.add_typer(design_app, name="design")


def cli_command(fn):
    """One place that turns failures into one line and an exit code, never a traceback.

    ``--out`` is checked and locked before any work. Bad input or usage → exit 2; what the
    environment refuses (permissions, a full disk, a folder another run holds) → exit 1.
    Anything unexpected is one line and exit 1 too (``WTP_DEBUG=1`` shows the traceback).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from wtp.errors import OutputError

        try:
            if kwargs.get("out") is not None:
                from wtp.output import prepare_output

                inputs = [kwargs[k] for k in _INPUT_OPTIONS if kwargs.get(k) is not None]
                prepare_output(kwargs["out"], inputs=inputs)
            return fn(*args, **kwargs)
        except InputError as exc:
            typer.echo(printable(f"error: {exc.message()}"), err=True)
            raise typer.Exit(2) from None
        except OutputError as exc:
            typer.echo(printable(f"error: {exc}"), err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(printable(f"error: {exc.strerror or exc}{where}"), err=True)
            raise typer.Exit(1) from None
        except MemoryError:
            typer.echo("error: out of memory", err=True)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("WTP_DEBUG"):
                raise
            typer.echo(
                printable(
                    f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
                    + " (WTP_DEBUG=1 shows where)"
                ),
                err=True,
            )
            raise typer.Exit(1) from None
        finally:
            from wtp.output import release_outputs

            release_outputs()

    return wrapper


# command arguments that name input files or folders: --out may not be one of them
_INPUT_OPTIONS = ("file", "study_dir", "study", "respondents", "customers", "scenario")


# shared option types ---------------------------------------------------------------------------
OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the results (created if missing).")]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", min=0, max=2**32 - 1, help="Random seed: same seed and data, same numbers."
    ),
]
RespondentsOpt = Annotated[
    Path | None,
    typer.Option(
        "--respondents",
        help="respondents.csv: respondent_id, segment[, weight] joined on respondent_id.",
    ),
]
StudyOpt = Annotated[
    Path | None,
    typer.Option(
        "--study", help="Study folder or study.toml: labels, currency, level order, settings."
    ),
]
FileArg = Annotated[Path, typer.Argument(help="Input file (.csv, .xlsx, .parquet or .sav).")]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="Map contract columns to the file's: 'respondent_id=Response ID,cheap=bargain' "
        "(conjoint: attributes=Brand|Sugar lists the attribute columns). Overrides the study's [columns.<kind>].",
    ),
]
HeaderRowOpt = Annotated[
    int | None,
    typer.Option(
        "--header-row",
        help="Row (1-based) holding the column names; default: found (title blocks skipped).",
    ),
]
HeaderRowsOpt = Annotated[
    int | None,
    typer.Option(
        "--header-rows",
        help="Rows of question text under the header (Qualtrics 2, SurveyMonkey 1); default: recognised.",
    ),
]
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="HB: show sampling progress.")
]
FastOpt = Annotated[
    bool, typer.Option("--fast", help="Fewer draws and replicates, for a first look.")
]
# hierarchical Bayes sampler options (both HB commands; study.toml [maxdiff]/[conjoint] take the
# same keys with underscores; an option given here wins)
DrawsOpt = Annotated[
    int | None,
    typer.Option(
        "--draws",
        help="HB: kept draws per chain at the first convergence check; sampling continues until converged (default 200).",
    ),
]
TuneOpt = Annotated[
    int | None,
    typer.Option(
        "--tune", help="HB: warm-up iterations per chain in the first round (default 300)."
    ),
]
ChainsOpt = Annotated[
    int | None,
    typer.Option("--chains", help="HB: chains, run in parallel (default: one per core, 2 to 4)."),
]
TimeBudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        help="HB: seconds (compilation included) after which sampling stops and the run is reported as not converged (default 600).",
    ),
]
TargetAcceptOpt = Annotated[
    float | None,
    typer.Option(
        "--target-accept",
        help="HB: target acceptance of the first round, raised after divergences (default 0.8).",
    ),
]
SavePosteriorOpt = Annotated[
    bool | None,
    typer.Option(
        "--save-posterior/--no-save-posterior",
        help="HB: also write the full posterior (posterior.nc, single precision; large).",
    ),
]


def default(section: str, key: str):
    """The study.toml default of ``[section] key`` (:mod:`wtp.settings` owns every default); an
    option left out takes the study's setting, else this."""
    import dataclasses

    (f,) = (f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
    return f.default


def study_option(flag: str, section: str, key: str, help: str, otherwise=None, **kw):
    """An option that, left out, takes the study's ``[section] key``, else the schema's default
    (:func:`default`) or ``otherwise`` where the command differs; ``--help`` says which."""
    value = default(section, key) if otherwise is None else otherwise
    shown = str(value).lower() if isinstance(value, bool) else value
    return typer.Option(
        flag, help=f"{help}; default: the study's {section}.{key} (study.toml), else {shown}.", **kw
    )


def hb_options(section, **given) -> dict:
    """Sampler settings: options given on the command line, else the study's ``[maxdiff]`` or
    ``[conjoint]`` section (typed), else the sampler's defaults."""
    from wtp.hb import sampler_settings
    from wtp.settings import sampler_keys

    return sampler_settings(sampler_keys(section), **given)


def chosen(given, setting):
    """An option given on the command line wins over the study's setting (which holds the
    schema's default when study.toml leaves it out)."""
    return setting if given is None else given


def warn_unconverged(detail: str) -> None:
    bar = "!" * 72
    typer.echo(f"{bar}\nWARNING: NOT CONVERGED. {detail}\n{bar}", err=True)


def file_layout(
    settings: dict, kind: str, columns: str | None, header_row: int | None, header_rows: int | None
):
    """The layout of a single input file: the study's settings, then the command's flags."""
    import dataclasses

    from wtp.columns import check_column_map, parse_column_map
    from wtp.study import input_layout

    mapped = parse_column_map(columns) if columns else None
    if mapped is not None:
        problems = check_column_map(mapped, kind, "--columns")
        if problems:
            raise InputError(problems)
    layout = input_layout(settings, kind, columns=mapped)
    flags = {
        k: v for k, v in (("header_row", header_row), ("header_rows", header_rows)) if v is not None
    }
    return dataclasses.replace(layout, **flags) if flags else layout


def min_n(config, instrument: str, method: str | None = None) -> int:
    """The study's minimum respondents per segment for an instrument (``[sample]``)."""
    from wtp.sample import SampleSettings

    return SampleSettings.from_settings(config.sample).threshold(instrument, method)


BIG_FILE_BYTES = 20_000_000


def load_answers(
    file: Path,
    validator,
    respondents: Path | None,
    settings: Study,
    *,
    kind: str = "vw",
    columns: str | None = None,
    header_row: int | None = None,
    header_rows: int | None = None,
) -> object:
    """Read one instrument file and resolve segments exactly as ``wtp run`` does.

    ``settings``: ``--study`` as :func:`study_settings` read it; its respondents file is used
    unless ``--respondents`` is given.
    """
    from wtp.io import attach_segments, read_table, validate_respondents
    from wtp.schema import segment_order, sort_by_segment
    from wtp.study import input_layout

    resp_path = respondents
    if resp_path is None and settings.folder is not None:
        from wtp.study import data_path

        resp_path = data_path(settings.folder, "respondents", settings.config)
    resp = (
        validate_respondents(
            read_table(resp_path), layout=input_layout(settings.raw, "respondents")
        )
        if resp_path is not None
        else None
    )
    layout = file_layout(settings.raw, kind, columns, header_row, header_rows)
    if file.is_file() and file.stat().st_size > BIG_FILE_BYTES:
        # a big file takes seconds to read and check: say so rather than sit silent
        typer.echo(
            printable(f"reading and validating {file.name} ({file.stat().st_size / 1e6:,.0f} MB)"),
            err=True,
        )
    answers = attach_segments(validator(read_table(file), layout=layout), resp)
    if settings.folder is not None:
        # the study's item codes and attribute names checked as wtp run checks them
        from wtp.study import check_settings_against_data

        problems = check_settings_against_data(
            settings.config,
            str(settings.folder / "study.toml"),
            maxdiff=answers if kind == "maxdiff" else None,
            conjoint=answers if kind == "conjoint" else None,
        )
        if problems:
            raise InputError(problems)
    # the study's segment order, as wtp run meets it: segments.csv's, else respondents.csv's
    segments = None
    if settings.folder is not None:
        from wtp.io import validate_segments
        from wtp.study import data_path

        seg_path = data_path(settings.folder, "segments", settings.config)
        if seg_path is not None:
            segments = validate_segments(
                read_table(seg_path),
                source=str(seg_path),
                need_arpa_churn=False,
                layout=input_layout(settings.raw, "segments"),
            )
    return sort_by_segment(answers, segment_order(segments, resp, [answers]))


class Study(NamedTuple):
    """What a single-file command knows of ``--study``: its folder, study.toml as parsed (for the
    file layouts) and the typed settings, which hold every default."""

    folder: Path | None
    raw: dict
    config: StudySettings


def study_settings(study: Path | None) -> Study:
    """``--study`` read once (without its data); the schema's defaults when it is not given."""
    from wtp.study import config_only

    return Study(*config_only(study))


def study_meta(settings: Study) -> dict:
    """Name, currency and price unit for a report: the study's (with the schema's defaults); a
    command without ``--study`` states no currency or unit it was never told."""
    info = settings.config.study
    if settings.folder is None:
        return {"name": "wtp study", "currency": "", "price_unit": "", "period": info.period}
    return {
        "name": info.name or settings.folder.name,
        "currency": info.currency,
        "price_unit": info.price_unit,
        "period": info.period,
    }


def echo_table(frame, float_digits: int = 2) -> None:
    import pandas as pd

    with pd.option_context(
        "display.width",
        120,
        "display.max_columns",
        20,
        "display.float_format",
        f"{{:,.{float_digits}f}}".format,
    ):
        typer.echo(printable(frame.to_string(index=False)))


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class progress_bar:
    """A rich progress bar on stderr fed by ``tick(done, total)`` callbacks; silent when disabled."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)
        return self.tick

    def tick(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False


# commands ---------------------------------------------------------------------------------------


@app.command("vw")
@cli_command
def vw_command(
    file: FileArg,
    out: OutOpt = Path("reports/vw"),
    seed: SeedOpt = 0,
    respondents: RespondentsOpt = None,
    study: StudyOpt = None,
    columns: ColumnsOpt = None,
    header_row: HeaderRowOpt = None,
    header_rows: HeaderRowsOpt = None,
    bootstrap: Annotated[
        int | None,
        study_option(
            "--bootstrap",
            "van_westendorp",
            "bootstrap",
            "Bootstrap replicates for intervals (0 = none)",
            min=0,
        ),
    ] = None,
    inconsistent: Annotated[
        str | None,
        study_option(
            "--inconsistent",
            "van_westendorp",
            "inconsistent",
            "exclude or repair (sort the four answers)",
        ),
    ] = None,
    ties: Annotated[
        str | None,
        study_option(
            "--ties",
            "van_westendorp",
            "ties",
            "keep (ties are consistent) or drop (as R pricesensitivitymeter)",
        ),
    ] = None,
    cheap_rule: Annotated[
        str | None,
        study_option(
            "--cheap-rule",
            "van_westendorp",
            "cheap_rule",
            "'ge' (contract: share with answer >= P) or 'gt' (R pricesensitivitymeter: > P) for the two cheap curves",
        ),
    ] = None,
    plateau: Annotated[
        str | None,
        study_option(
            "--plateau",
            "van_westendorp",
            "plateau",
            "Where curves touch over an interval: lowest, highest or middle price",
        ),
    ] = None,
    nms_scale: Annotated[
        str | None,
        typer.Option(
            "--nms-scale",
            help="How to read buy_cheap/buy_expensive: 'scale' (1-5) or 'probability' (0-1).",
        ),
    ] = None,
    nms_calibration: Annotated[
        str | None,
        typer.Option(
            "--nms-calibration",
            help="Scale point to purchase probability, e.g. '5=0.7,4=0.5,3=0.3,2=0.1,1=0' (the default).",
        ),
    ] = None,
) -> None:
    """Van Westendorp price sensitivity: curves, PMC/OPP/IPP/PME, acceptable range, NMS."""
    from wtp.io import atomic_output_dir, validate_vw
    from wtp.randomness import stage_rng
    from wtp.report.vw import write_outputs
    from wtp.vanwestendorp import parse_calibration, van_westendorp

    settings = study_settings(study)
    answers = load_answers(
        file,
        validate_vw,
        respondents,
        settings,
        kind="vw",
        columns=columns,
        header_row=header_row,
        header_rows=header_rows,
    )
    cfg = settings.config.van_westendorp
    calibration = parse_calibration(nms_calibration) or parse_calibration(
        cfg.nms_calibration, "study.toml [van_westendorp] nms_calibration"
    )
    bootstrap = chosen(bootstrap, cfg.bootstrap)
    with progress_bar("Bootstrap", enabled=bootstrap > 0) as tick:
        result = van_westendorp(
            answers,
            inconsistent=chosen(inconsistent, cfg.inconsistent),
            ties=chosen(ties, cfg.ties),
            cheap_rule=chosen(cheap_rule, cfg.cheap_rule),
            plateau=chosen(plateau, cfg.plateau),
            nms_scale=nms_scale or cfg.nms_scale,
            nms_calibration=calibration,
            bootstrap=bootstrap,
            rng=stage_rng(seed, "vw"),
            progress=tick,
        )
    from wtp.sample import flag_small_samples

    result = flag_small_samples(result, "vw", min_n(settings.config, "vw"))
    with atomic_output_dir(out) as tmp:
        write_outputs(
            result, tmp, meta=study_meta(settings), seed=seed, inputs={file.name: _sha256(file)}
        )
    for w in result.warnings:
        typer.echo(printable(f"warning: {w}"), err=True)
    echo_table(result.summary())
    typer.echo(
        f"wrote {out}/price_points.csv, curves.csv{', nms.csv' if result.has_nms else ''}, report.html"
    )


@app.command("maxdiff")
@cli_command
def maxdiff_command(
    file: FileArg,
    out: OutOpt = Path("reports/maxdiff"),
    seed: SeedOpt = 0,
    respondents: RespondentsOpt = None,
    study: StudyOpt = None,
    columns: ColumnsOpt = None,
    header_row: HeaderRowOpt = None,
    header_rows: HeaderRowsOpt = None,
    method: Annotated[
        str | None, study_option("--method", "maxdiff", "method", "hb, logit or counts")
    ] = None,
    draws: DrawsOpt = None,
    tune: TuneOpt = None,
    chains: ChainsOpt = None,
    time_budget: TimeBudgetOpt = None,
    target_accept: TargetAcceptOpt = None,
    save_posterior: SavePosteriorOpt = None,
    cores: Annotated[
        int | None,
        typer.Option("--cores", help="HB: cores for the chains (default: all, at most --chains)."),
    ] = None,
    segment_means: Annotated[
        bool | None,
        study_option(
            "--segment-means/--no-segment-means",
            "maxdiff",
            "segment_means",
            "HB: a population mean per segment",
        ),
    ] = None,
    turf_size: Annotated[
        int | None,
        study_option(
            "--turf",
            "maxdiff",
            "turf_size",
            "TURF portfolio size from individual utilities (HB; 0 = none)",
            min=0,
        ),
    ] = None,
    reach: Annotated[
        str | None,
        study_option("--reach", "maxdiff", "turf_reach", "TURF reach: above_mean or top_n"),
    ] = None,
    top_n: Annotated[int, typer.Option("--top-n", min=1, help="TURF: n for --reach top_n.")] = 3,
    progress: ProgressOpt = True,
    latent_segments: Annotated[
        str | None,
        typer.Option(
            "--latent-segments",
            help="HB: group respondents by their utilities into K preference segments, or 'auto' (lowest BIC).",
        ),
    ] = None,
) -> None:
    """MaxDiff (best-worst) item scores: counts, aggregate logit or hierarchical Bayes."""

    from wtp.errors import Problem
    from wtp.io import atomic_output_dir, validate_maxdiff
    from wtp.maxdiff import METHODS, estimate_maxdiff
    from wtp.randomness import stage_rng
    from wtp.report.maxdiff import write_outputs

    settings = study_settings(study)
    cfg = settings.config.maxdiff
    method = chosen(method, cfg.method)
    if method not in METHODS:
        raise InputError(Problem("--method", None, None, "one of " + ", ".join(METHODS), method))
    from wtp.preference_segments import parse_latent_segments

    latent = parse_latent_segments(latent_segments)
    if latent is not None and method != "hb":
        raise InputError(
            Problem(
                "--latent-segments",
                None,
                None,
                "--method hb (preference segments need individual utilities)",
                method,
            )
        )
    answers = load_answers(
        file,
        validate_maxdiff,
        respondents,
        settings,
        kind="maxdiff",
        columns=columns,
        header_row=header_row,
        header_rows=header_rows,
    )
    labels = dict(cfg.items) or None
    items = list(labels) if labels and set(answers["item"].astype(str)) <= set(labels) else None
    hb = hb_options(
        cfg,
        draws=draws,
        tune=tune,
        chains=chains,
        time_budget=time_budget,
        target_accept=target_accept,
        save_posterior=save_posterior,
    )
    keep_posterior = hb.pop("save_posterior", False)
    result = estimate_maxdiff(
        answers,
        method=method,
        rng=stage_rng(seed, "maxdiff"),
        cores=cores,
        progress=progress,
        labels=labels,
        items=items,
        segment_means=chosen(segment_means, cfg.segment_means),
        **hb,
    )
    from wtp.sample import flag_small_samples

    result = flag_small_samples(result, "maxdiff", min_n(settings.config, "maxdiff", method))
    turf_result = None
    turf_size = chosen(turf_size, cfg.turf_size)
    if method == "hb" and turf_size > 0:
        from wtp.turf import turf

        k = min(turf_size, len(result.items))
        weights = (
            answers.groupby("respondent_id", sort=False)["weight"].first()
            if "weight" in answers.columns
            else None
        )
        weights = weights.set_axis(weights.index.astype(str)) if weights is not None else None
        turf_result = turf(
            result.individual_utilities,
            k,
            reach=chosen(reach, cfg.turf_reach),
            top_n=top_n,
            weights=weights,
        )
    with atomic_output_dir(out) as tmp:
        written = write_outputs(
            result,
            tmp,
            meta=study_meta(settings),
            seed=seed,
            inputs={file.name: _sha256(file)},
            turf_result=turf_result,
            save_posterior=keep_posterior,
        )
        if latent is not None:
            from wtp.preference_segments import preference_segments
            from wtp.preference_segments import write_outputs as write_preference
            from wtp.report import provenance

            pref = preference_segments(result, latent, rng=stage_rng(seed, "preference_segments"))
            written += write_preference(
                tmp,
                pref,
                meta=study_meta(settings),
                provenance=provenance(seed, {file.name: _sha256(file)}),
            )
    d = result.diagnostics
    for w in result.warnings:
        typer.echo(printable(f"warning: {w}"), err=True)
    if not result.converged:
        from wtp.hb import unconverged_advice

        if d.get("separated_items"):
            detail = (
                "Separation: an item picked best or worst every time it was shown has no finite logit utility "
                "(see the warnings above). Do not use these numbers; rerun with --method hb or counts."
            )
        elif method == "hb":
            detail = unconverged_advice(d)
        else:
            detail = "The optimiser did not converge; do not use these numbers."
        warn_unconverged(detail)
    summary = result.summary()
    echo_table(summary.drop(columns=["item"]).head(25), 1)
    if method == "hb":
        typer.echo(
            f"converged: {result.converged}  max R-hat {d['max_rhat']:.4f}  min bulk ESS {d['min_ess_bulk']:.0f}  "
            f"divergences {d['divergences']}  mean RLH {d['mean_rlh']:.3f}"
        )
        if "corr_max_rhat" in d:
            typer.echo(
                f"population correlations (nuisance): max R-hat {d['corr_max_rhat']:.4f}  min bulk ESS {d['corr_min_ess_bulk']:.0f}"
                + ("" if d.get("covariance_converged") else "  (not settled: more --draws)")
            )
    if latent is not None:
        echo_table(pref.summary(), 2)
    typer.echo(f"wrote {out}/" + ", ".join(written))


@app.command("conjoint")
@cli_command
def conjoint_command(
    file: FileArg,
    out: OutOpt = Path("reports/conjoint"),
    seed: SeedOpt = 0,
    respondents: RespondentsOpt = None,
    study: StudyOpt = None,
    columns: ColumnsOpt = None,
    header_row: HeaderRowOpt = None,
    header_rows: HeaderRowsOpt = None,
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="Products to simulate (levels and price).")
    ] = None,
    method: Annotated[
        str | None,
        study_option(
            "--method",
            "conjoint",
            "method",
            "mnl (aggregate logit per segment) or hb (hierarchical Bayes)",
            otherwise="mnl",
        ),
    ] = None,
    coding: Annotated[
        str | None,
        study_option(
            "--coding", "conjoint", "coding", "dummy (first level = 0) or effects (levels sum to 0)"
        ),
    ] = None,
    price: Annotated[
        str | None,
        study_option(
            "--price",
            "conjoint",
            "price",
            "linear (one coefficient) or partworth (one per tested price)",
        ),
    ] = None,
    draws: DrawsOpt = None,
    tune: TuneOpt = None,
    chains: ChainsOpt = None,
    time_budget: TimeBudgetOpt = None,
    target_accept: TargetAcceptOpt = None,
    progress: ProgressOpt = True,
    se: Annotated[
        str | None,
        study_option(
            "--se",
            "conjoint",
            "se",
            "MNL standard errors: cluster (by respondent) or plain (inverse Hessian, too narrow for panel data)",
        ),
    ] = None,
) -> None:
    """Choice-based conjoint: part-worths, importances, willingness to pay, market simulator."""
    from wtp.conjoint import conjoint_levels, conjoint_numeric, estimate_conjoint, simulator_tables
    from wtp.io import atomic_output_dir, read_table, validate_conjoint
    from wtp.randomness import stage_rng
    from wtp.report.conjoint import write_outputs

    settings = study_settings(study)
    cfg = settings.config.conjoint
    # the study's method when study.toml sets one; else the aggregate MNL, which answers in
    # seconds (the schema's default, hb, is what `wtp run` prices from)
    method = chosen(method, cfg.method if "method" in settings.raw.get("conjoint", {}) else "mnl")
    answers = load_answers(
        file,
        validate_conjoint,
        respondents,
        settings,
        kind="conjoint",
        columns=columns,
        header_row=header_row,
        header_rows=header_rows,
    )
    products = read_table(scenario) if scenario is not None else None
    # the same streams as the conjoint and simulator stages of wtp run
    hb = hb_options(
        cfg,
        draws=draws,
        tune=tune,
        chains=chains,
        time_budget=time_budget,
        target_accept=target_accept,
    )
    hb.pop("save_posterior", None)
    result = estimate_conjoint(
        answers,
        levels=conjoint_levels(settings.config) or None,
        method=method,
        coding=chosen(coding, cfg.coding),
        price=chosen(price, cfg.price),
        rng=stage_rng(seed, "conjoint"),
        progress=progress and method == "hb",
        se=chosen(se, cfg.se),
        numeric=conjoint_numeric(settings.config),
        **hb,
    )
    from wtp.sample import flag_small_samples

    result = flag_small_samples(result, "conjoint", min_n(settings.config, "conjoint"))
    tables = simulator_tables(result, products, rng=stage_rng(seed, "simulator"))
    inputs = {file.name: _sha256(file)}
    if scenario is not None:
        inputs[scenario.name] = _sha256(scenario)
    with atomic_output_dir(out) as tmp:
        write_outputs(
            result, tmp, meta=study_meta(settings), seed=seed, inputs=inputs, tables=tables
        )
    for w in result.warnings:
        typer.echo(printable(f"warning: {w}"), err=True)
    outside = tables.extrapolation if tables.extrapolation is not None else None
    for r in outside.itertuples(index=False) if outside is not None else ():
        side = "above" if r.outside_by > 0 else "below"
        typer.echo(
            f"warning: {r.product}: {r.attribute} {r.value:g} is {abs(r.outside_by):g} {side} the tested range "
            f"{r.tested_min:g}-{r.tested_max:g} ({r.outside_share:.0%} of it); its shares are extrapolated.",
            err=True,
        )
    for n in result.notes:
        typer.echo(printable(f"note: {n}"), err=True)
    if (
        method == "hb"
        and result.diagnostics is not None
        and not bool(result.diagnostics["ok"].all())
    ):
        from wtp.hb import unconverged_advice

        warn_unconverged(unconverged_advice(result.diagnostics.attrs.get("hb", {})))
    echo_table(
        result.importances.pivot(
            index="attribute", columns="segment", values="importance"
        ).reset_index(),
        1,
    )
    written = "partworths.csv, importances.csv, wtp.csv, fit.csv" + (
        ", demand.csv" if result.coding.none else ""
    )
    written += ", simulation.csv" if scenario is not None else ""
    written += ", extrapolation.csv" if outside is not None and len(outside) else ""
    written += (
        ", individual_partworths.csv, diagnostics.json" if result.individual is not None else ""
    )
    typer.echo(f"wrote {out}/{written}, report.html")


@app.command("segments")
@cli_command
def segments_command(
    file: FileArg,
    out: OutOpt = Path("reports/segments"),
    seed: SeedOpt = 0,
    study: StudyOpt = None,
    customers: Annotated[
        Path | None, typer.Option("--customers", help="customers.csv for cohorts, churn and ARPA.")
    ] = None,
    grow: Annotated[
        list[str] | None,
        typer.Option("--grow", help="What-if: SEGMENT=10% grows that segment's customers by 10%."),
    ] = None,
    respondents: RespondentsOpt = None,
    columns: ColumnsOpt = None,
    header_row: HeaderRowOpt = None,
    header_rows: HeaderRowsOpt = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every", help="Trend rows per month, quarter or year (default: the study's period)."
        ),
    ] = None,
) -> None:
    """Segment performance scored with MAP (volume, performance, potential), cohorts, trend, what-if."""
    from wtp.io import (
        atomic_output_dir,
        read_table,
        validate_customers,
        validate_respondents,
        validate_segments,
    )

    if respondents is not None:
        # accepted like every single-file command; segments.csv already names its segments, so
        # the file is only checked (a broken respondents file is still an error)
        validate_respondents(read_table(respondents))
    from wtp.report import provenance
    from wtp.report.segments import write_outputs
    from wtp.segments import cohorts, parse_grow, score_segments, score_settings, what_if

    settings = study_settings(study)
    meta = study_meta(settings)
    if customers is None and settings.folder is not None:
        # resolve the customers file exactly as load_study does
        from wtp.study import data_path

        customers = data_path(settings.folder, "customers", settings.config)
    from wtp.study import input_layout

    layout = file_layout(settings.raw, "segments", columns, header_row, header_rows)
    segs = validate_segments(read_table(file), need_arpa_churn=customers is None, layout=layout)
    cust = (
        validate_customers(
            read_table(customers),
            segments=segs["segment"].tolist(),
            layout=input_layout(settings.raw, "customers"),
        )
        if customers is not None
        else None
    )
    growth = parse_grow(grow or [], segs["segment"].tolist())
    as_of, export_date = settings.config.study.as_of, settings.config.study.export_date
    cohort_result = (
        cohorts(cust, period=meta["period"], as_of=as_of, export_date=export_date)
        if cust is not None
        else None
    )
    scoring = score_settings(settings.config.segments)
    scores = score_segments(
        segs, period=meta["period"], as_of=as_of, cohort_result=cohort_result, **scoring
    )
    if cust is not None:
        from dataclasses import replace

        from wtp.segments import trend

        scores = replace(
            scores, trend=trend(cust, period=meta["period"], every=every, as_of=cohort_result.as_of)
        )
    scenario = what_if(scores, growth) if growth else None
    inputs = {file.name: _sha256(file)}
    if customers is not None:
        inputs[customers.name] = _sha256(customers)
    with atomic_output_dir(out) as tmp:
        written = write_outputs(
            tmp, scores, cohort_result, scenario, meta=meta, provenance=provenance(seed, inputs)
        )
    for message in cohort_result.warnings if cohort_result is not None else ():
        typer.echo(f"warning: {message}", err=True)
    for message in cohort_result.notes if cohort_result is not None else ():
        typer.echo(f"note: {message}", err=True)
    echo_table(scores.summary())
    if scenario is not None:
        echo_table(scenario.summary(), float_digits=4)
    typer.echo(f"wrote {out}/" + ", ".join(written))


@app.command("explore")
@cli_command
def explore_command(
    customers_file: Annotated[
        Path,
        typer.Argument(
            help="customers.csv (trialers and profile columns welcome; invoice lines are collapsed)."
        ),
    ],
    by: Annotated[
        str | None,
        typer.Option("--by", help="Profile columns to slice by, comma-separated (default: all)."),
    ] = None,
    out: OutOpt = Path("reports/explore"),
    seed: SeedOpt = 0,
    study: StudyOpt = None,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="Also slice by pairs of the strongest dimensions.")
    ] = False,
    choose: Annotated[
        str | None,
        typer.Option(
            "--choose", help="Dimension to write as segments.csv (default: the top-ranked)."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Column map NAME=FILE_COLUMN,…, e.g. customer_id=CustOrgID,start_date=ValidFrom.",
        ),
    ] = None,
    min_customers: Annotated[
        int, typer.Option("--min-customers", help="Smaller groups are pooled as 'other'.")
    ] = 30,
) -> None:
    """Find segment hypotheses: slice customers by every profile column and rank the slices."""
    from wtp.explore import explore, parse_columns, prepare_customers, split_by
    from wtp.io import atomic_output_dir, read_table
    from wtp.report import provenance
    from wtp.report.explore import write_outputs

    settings = study_settings(study)
    meta = study_meta(settings)
    mapping = {**settings.config.columns.customers, **parse_columns(columns)}
    base = prepare_customers(
        read_table(customers_file),
        columns=mapping,
        period=meta["period"],
        as_of=settings.config.study.as_of,
    )
    result = explore(base, split_by(by), pairs=pairs, choose=choose, min_customers=min_customers)
    with atomic_output_dir(out) as tmp:
        written = write_outputs(
            tmp,
            result,
            meta=meta,
            provenance=provenance(seed, {customers_file.name: _sha256(customers_file)}),
        )
    echo_table(result.summary().drop(columns="reason"), 3)
    typer.echo(f"segments.csv slices by: {result.chosen}")
    typer.echo(f"wrote {out}/" + ", ".join(written))


@app.command("run")
@cli_command
def run_command(
    study_dir: Annotated[Path, typer.Argument(help="Study folder with study.toml.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the results (default: reports/<study folder name>)."
        ),
    ] = None,
    seed: SeedOpt = 0,
    fast: FastOpt = False,
) -> None:
    """Run every stage the study's files allow and write the price-book proposal."""
    run_pipeline(study_dir, out if out is not None else default_run_out(study_dir), seed, fast)


def default_run_out(study_dir: Path) -> Path:
    """``reports/<study folder name>`` (a study.toml given directly: its folder's name)."""
    folder = Path(study_dir).resolve()
    if folder.suffix == ".toml":
        folder = folder.parent
    return Path("reports") / folder.name


def run_pipeline(study_dir: Path, out: Path, seed: int, fast: bool) -> None:
    """Shared by ``wtp run`` and ``wtp demo``."""
    from wtp.io import atomic_output_dir
    from wtp.pipeline import run_study, write_study

    def say(msg: str) -> None:
        typer.echo(f"  {msg}", err=True)

    run = run_study(study_dir, seed=seed, fast=fast, progress=say)
    with atomic_output_dir(out) as tmp:
        write_study(run, tmp)
    typer.echo(f"{run.study.name}: wrote {out}/index.html")
    for name, seconds in run.timings.items():
        typer.echo(f"  ran      {name:<12} {seconds:6.1f} s")
    for name, why in run.skipped.items():
        typer.echo(f"  not run  {name:<12} {why}")
    for note in run.attention:
        typer.echo(printable(f"  look at: {note}"))


@app.command("demo")
@cli_command
def demo_command(
    out: OutOpt = Path("reports/demo"),
    seed: SeedOpt = 0,
    fast: FastOpt = False,
) -> None:
    """Run the whole pipeline on the demo study shipped with wtp."""
    from wtp.pipeline import demo_study_path

    run_pipeline(demo_study_path(), out, seed, fast)


class TakeUpRule(StrEnum):
    first_choice = "first-choice"
    share_of_preference = "share-of-preference"
    rfc = "rfc"


@app.command("simulate")
@cli_command
def simulate_command(
    source: Annotated[
        Path,
        typer.Argument(help="A run folder (from `wtp run`) or a study folder (with study.toml)."),
    ],
    book: Annotated[
        Path,
        typer.Option(
            "--book",
            help="Scenario file: scenario, segment, package, feature, price (what simulator.html exports).",
        ),
    ],
    rule: Annotated[
        TakeUpRule,
        typer.Option(
            "--rule",
            help="first-choice (the contract's take-up rule), share-of-preference (logit) or rfc; the last two need a conjoint.",
        ),
    ] = TakeUpRule.first_choice,
    out: OutOpt = Path("reports/simulate"),
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Random seed (a study folder's pipeline, RFC errors); default: the run's.",
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Study folder only: fewer draws and replicates.")
    ] = False,
) -> None:
    """Take-up and revenue of the price books in a scenario file: take_up.csv, scenarios.csv."""
    from wtp.io import atomic_output_dir, write_csv
    from wtp.pipeline import simulate_book_file

    result = simulate_book_file(
        source,
        book,
        rule=rule.value,
        seed=seed,
        fast=fast,
        progress=lambda m: typer.echo(f"  {m}", err=True),
    )
    with atomic_output_dir(out) as tmp:
        write_csv(result.take_up, tmp / "take_up.csv")
        write_csv(result.scenarios, tmp / "scenarios.csv")
        write_csv(result.guardrails, tmp / "guardrails.csv")
        write_csv(result.add_ons, tmp / "add_ons.csv")
        from wtp.report.pricing import write_simulation_report

        write_simulation_report(result, tmp, origin=str(source))
    echo_table(result.summary())
    for note in result.guardrails["note"]:
        typer.echo(f"  outside what was tested: {note}", err=True)
    typer.echo(f"wrote {out}/take_up.csv, scenarios.csv, guardrails.csv, add_ons.csv, report.html")


@design_app.command("maxdiff")
@cli_command
def design_maxdiff_command(
    out: OutOpt = Path("reports/design-maxdiff"),
    seed: SeedOpt = 0,
    items: Annotated[int, typer.Option("--items", min=2, help="Number of items.")] = 12,
    per_task: Annotated[int, typer.Option("--per-task", min=2, help="Items shown per task.")] = 4,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks per respondent.")] = 10,
    versions: Annotated[int, typer.Option("--versions", min=1, help="Design versions.")] = 10,
    study: StudyOpt = None,
) -> None:
    """A balanced MaxDiff design: design.csv and design_report.txt."""

    from wtp.io import atomic_output_dir
    from wtp.maxdiff import design_balance, design_maxdiff
    from wtp.randomness import stage_rng
    from wtp.report.maxdiff import write_design_outputs

    codes = None
    if study is not None:
        labelled = list(study_settings(study).config.maxdiff.items)
        if labelled:
            codes = labelled
            items = len(codes)
    design = design_maxdiff(
        items, per_task, tasks, versions, items=codes, rng=stage_rng(seed, "design")
    )
    balance = design_balance(design, items=codes)
    with atomic_output_dir(out) as tmp:
        written = write_design_outputs(design, balance, tmp)
        from wtp.report import write_design_report

        write_design_report(
            tmp,
            title="MaxDiff design",
            lead=f"{items} items, {per_task} per task, {tasks} tasks, {versions} versions.",
            summary=balance.summary(),
            text=balance.text(),
            seed=seed,
        )
        written.append("report.html")
    echo_table(balance.summary(), 3)
    typer.echo(f"wrote {out}/" + ", ".join(written))


@design_app.command("conjoint")
@cli_command
def design_conjoint_command(
    study_dir: Annotated[
        Path, typer.Argument(help="Study folder (attributes and levels in study.toml).")
    ],
    out: OutOpt = Path("reports/design-conjoint"),
    seed: SeedOpt = 0,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks per respondent.")] = 12,
    alts: Annotated[
        int, typer.Option("--alts", min=2, help="Alternatives per task (without none).")
    ] = 3,
    versions: Annotated[int, typer.Option("--versions", min=1, help="Design versions.")] = 10,
    method: Annotated[
        str, typer.Option("--method", help="balanced (balanced overlap) or random.")
    ] = "balanced",
    none: Annotated[
        bool, typer.Option("--none/--no-none", help="Add a no-choice alternative.")
    ] = True,
) -> None:
    """A choice-based conjoint design: design.csv and design_report.txt."""

    from wtp.conjoint import conjoint_levels, conjoint_prices, design_conjoint, evaluate_design
    from wtp.io import atomic_output_dir, write_csv
    from wtp.randomness import stage_rng

    settings = study_settings(study_dir)
    source = str(settings.folder / "study.toml")
    attributes = conjoint_levels(settings.config, source=source, required=True)
    prices = conjoint_prices(settings.config, source=source)
    design = design_conjoint(
        attributes,
        prices,
        n_tasks=tasks,
        n_alts=alts,
        n_versions=versions,
        none=none,
        method=method,
        rng=stage_rng(seed, "design"),
    )
    report = evaluate_design(design)
    with atomic_output_dir(out) as tmp:
        write_csv(design, tmp / "design.csv")
        (tmp / "design_report.txt").write_text(report.text(), encoding="utf-8")
        from wtp.report import write_design_report

        write_design_report(
            tmp,
            title="Conjoint design",
            lead=f"Level balance and D-error {report.d_error:.4f} (MNL, zero priors, per respondent).",
            summary=report.summary(),
            text=report.text(),
            seed=seed,
        )
    echo_table(report.summary())
    typer.echo(f"D-error (zero priors, per respondent): {report.d_error:.4f}")
    typer.echo(f"wrote {out}/design.csv, design_report.txt, report.html")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
