"""A study folder: ``study.toml`` plus the input files it names, read and validated once.

>>> study = load_study("surveys/demo")          # doctest: +SKIP
>>> study.vw.head()                            # validated, with segment and weight
>>> study.item_labels["sso"]
'Single sign-on'
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wtp.columns import KINDS, InputLayout, check_column_map, layout_from_settings
from wtp.errors import suggestion
from wtp.io import (
    RESERVED_SEGMENT,
    InputError,
    Problem,
    attach_segments,
    match_segments,
    nearby_file,
    read_table,
    validate_conjoint,
    validate_customers,
    validate_maxdiff,
    validate_respondents,
    validate_segments,
    validate_vw,
)
from wtp.sample import SampleSettings
from wtp.schema import segment_order, sort_by_segment
from wtp.settings import StudySettings, as_settings, parse_settings

INSTRUMENTS = ("van_westendorp", "maxdiff", "conjoint", "segments", "customers")
DEFAULT_FILES = {
    "respondents": "respondents.csv",
    "van_westendorp": "vw.csv",
    "maxdiff": "maxdiff.csv",
    "conjoint": "conjoint.csv",
    "segments": "segments.csv",
    "customers": "customers.csv",
}
# [data] key → the file kind of [columns.<kind>] and [input.<kind>]
FILE_KINDS = {
    "respondents": "respondents",
    "van_westendorp": "vw",
    "maxdiff": "maxdiff",
    "conjoint": "conjoint",
    "segments": "segments",
    "customers": "customers",
}
INPUT_KEYS = ("header_row", "header_rows")


@dataclass(frozen=True)
class Study:
    """A pricing study: settings from ``study.toml`` and its validated input frames.

    Frames that the study does not have are ``None``; :attr:`missing` names them.
    """

    folder: Path
    name: str
    currency: str = "USD"
    price_unit: str = "per account per month"
    period: str = "month"
    as_of: pd.Timestamp | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    config: StudySettings = field(default_factory=StudySettings)  # the typed settings
    respondents: pd.DataFrame | None = None
    vw: pd.DataFrame | None = None
    maxdiff: pd.DataFrame | None = None
    conjoint: pd.DataFrame | None = None
    segments: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    # the one segment order of the study (wtp.schema.segment_order): every table and page uses it
    segment_order: tuple[str, ...] = ()
    # segments.csv segments nobody in the survey answered for: reported as not priced
    unpriced_segments: tuple[str, ...] = ()

    @property
    def sample(self) -> SampleSettings:
        """Minimum respondents per segment and instrument, from ``[sample]``."""
        return SampleSettings.from_settings(self.config.sample)

    @property
    def missing(self) -> list[str]:
        """Instruments this study has no file for."""
        have = {
            "van_westendorp": self.vw,
            "maxdiff": self.maxdiff,
            "conjoint": self.conjoint,
            "segments": self.segments,
            "customers": self.customers,
        }
        return [k for k, v in have.items() if v is None]

    @property
    def item_labels(self) -> dict[str, str]:
        """MaxDiff item code → label from ``[maxdiff.items]`` (codes without a label map to themselves)."""
        return {str(k): str(v) for k, v in self.config.maxdiff.items.items()}

    @property
    def attribute_levels(self) -> dict[str, list[str]]:
        """Conjoint attribute → ordered levels from ``[conjoint.attributes]`` (first = reference)."""
        attrs = self.config.conjoint.attributes
        return {str(k): [str(x) for x in v] for k, v in attrs.items() if k != "price"}

    def checksums(self) -> dict[str, str]:
        """SHA-256 of every input file, for the report's provenance."""
        out = {}
        for key, path in self.files.items():
            out[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return out


def _find_toml(path: Path) -> Path:
    if path.is_dir():
        path = path / "study.toml"
    if not path.exists():
        raise InputError(
            Problem(str(path), None, None, "a study folder with a study.toml", "no such file")
        )
    if not path.is_file():
        raise InputError(
            Problem(
                str(path),
                None,
                None,
                "study.toml as a regular file",
                "a folder" if path.is_dir() else "not a regular file",
            )
        )
    return path


def _toml_text(toml_path: Path) -> str:
    """study.toml as text: UTF-8 (a BOM allowed); UTF-16 with a BOM is read too; anything else
    is an error naming the line and the byte."""
    raw = toml_path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            Problem(
                str(toml_path),
                line,
                None,
                "UTF-8 text (save the file as UTF-8; it looks like latin-1/Windows-1252)",
                f"byte 0x{raw[exc.start]:02x}",
            )
        ) from None


def read_settings(path: str | Path, *, fast: bool = False) -> tuple[Path, dict[str, Any]]:
    """Parse and validate ``study.toml``; returns (folder, settings as parsed)."""
    folder, settings, _config = load_settings(path, fast=fast)
    return folder, settings


def load_settings(
    path: str | Path, *, fast: bool = False
) -> tuple[Path, dict[str, Any], StudySettings]:
    """Parse ``study.toml`` and validate it against :mod:`wtp.settings`: (folder, raw, typed)."""
    toml_path = _find_toml(Path(path))
    from wtp.io import remember_input

    remember_input(toml_path)
    try:
        settings = tomllib.loads(_toml_text(toml_path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(Problem(str(toml_path), None, None, "valid TOML", str(exc))) from exc
    config = parse_settings(settings, source=str(toml_path), fast=fast)
    return toml_path.parent, settings, config


def data_path(
    folder: Path, key: str, config: StudySettings, *, source: str | None = None
) -> Path | None:
    """The input file a study names for ``key`` (``[data]``, else the contract's default name).

    Relative paths must stay inside the study folder after symbolic links are resolved; absolute
    or outside paths need ``[data] allow_outside = true``; only regular files are read. Errors
    name study.toml and the key, never the content of the file.
    """
    source = source or str(folder / "study.toml")
    home = folder.resolve()
    if key in config.data_given:
        value = getattr(config.data, key)
        given = Path(os.path.expanduser(value)) if value.startswith("~") else Path(value)
        path = given if given.is_absolute() else folder / given
    else:
        if config.data_given or not (folder / DEFAULT_FILES[key]).exists():
            return None
        value, path = DEFAULT_FILES[key], folder / DEFAULT_FILES[key]
    real = path.resolve()
    if not config.data.allow_outside and (Path(value).is_absolute() or home not in real.parents):
        raise InputError(
            Problem(
                source,
                None,
                f"data.{key}",
                "a path inside the study folder (or [data] allow_outside = true)",
                value,
            )
        )
    try:
        st = os.stat(real)
    except OSError:
        raise InputError(
            Problem(source, None, f"data.{key}", "a file that exists" + nearby_file(path), value)
        ) from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise InputError(
            Problem(source, None, f"data.{key}", "a regular file", f"{value} is {what}")
        )
    return real


def column_maps(
    settings: dict[str, Any], source: str = "study.toml"
) -> dict[str, dict[str, object]]:
    """``[columns.<kind>]`` tables, checked: kind ∈ :data:`wtp.columns.KINDS`, keys contract
    columns of that kind (``attributes`` list for conjoint), values the file's column names.
    An unknown kind or key is an error naming the closest known one."""
    raw = settings.get("columns", {})
    if not isinstance(raw, dict):
        raise InputError(
            Problem(source, None, "columns", "a table of [columns.<kind>] tables", raw)
        )
    problems, out = [], {}
    for kind, table in raw.items():
        if kind not in KINDS:
            problems.append(
                Problem(
                    source,
                    None,
                    f"columns.{kind}",
                    "one of [columns." + "], [columns.".join(KINDS) + "]" + suggestion(kind, KINDS),
                    kind,
                )
            )
            continue
        if not isinstance(table, dict):
            problems.append(
                Problem(
                    source,
                    None,
                    f"columns.{kind}",
                    'a table: contract_column = "file column"',
                    table,
                )
            )
            continue
        problems += [
            Problem(source, None, f"columns.{kind}.{p.column}", p.expected, p.found)
            for p in check_column_map(table, kind, source)
        ]
        out[kind] = dict(table)
    if problems:
        raise InputError(problems)
    return out


def input_layout(
    settings: dict[str, Any],
    kind: str,
    columns: dict[str, object] | None = None,
    source: str = "study.toml",
) -> InputLayout:
    """How a file of ``kind`` is laid out: ``[columns.<kind>]`` (or ``columns`` given, e.g. from
    ``--columns``), ``header_row``/``header_rows`` from ``[input]`` overridden by
    ``[input.<kind>]``, and the study's currency."""
    raw = settings.get("input", {})
    problems = []
    if not isinstance(raw, dict):
        raise InputError(
            Problem(source, None, "input", "a table with header_row / header_rows", raw)
        )
    for key in raw:
        if key in KINDS or key in INPUT_KEYS:
            continue
        problems.append(
            Problem(
                source,
                None,
                f"input.{key}",
                "header_row, header_rows or a [input.<kind>] table"
                + suggestion(key, [*INPUT_KEYS, *KINDS]),
                key,
            )
        )
    own = raw.get(kind, {}) if isinstance(raw.get(kind, {}), dict) else {}
    for key in own:
        if key not in INPUT_KEYS:
            problems.append(
                Problem(
                    source,
                    None,
                    f"input.{kind}.{key}",
                    "header_row or header_rows" + suggestion(key, INPUT_KEYS),
                    key,
                )
            )
    values = {}
    for key in INPUT_KEYS:
        value = own.get(key, raw.get(key))
        if value is None or value == "auto":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (1 if key == "header_row" else 0)
        ):
            problems.append(
                Problem(
                    source,
                    None,
                    f"input.{key}",
                    ("a row number from 1" if key == "header_row" else "a count of rows, 0 or more")
                    + ' or "auto"',
                    value,
                )
            )
            continue
        values[key] = value
    if problems:
        raise InputError(problems)
    if columns is None:
        columns = column_maps(settings, source).get(kind, {})
    currency = settings.get("study", {}).get("currency")
    return layout_from_settings(columns, currency=str(currency) if currency else None, **values)


def sample_settings(settings: dict[str, Any], source: str = "study.toml") -> SampleSettings:
    """``[sample]``: ``min_n`` and per instrument ``min_n_vw``, ``min_n_maxdiff`` (default 50 for
    hierarchical Bayes), ``min_n_conjoint``, read through the schema (:class:`wtp.settings.Sample`
    holds the defaults)."""
    return SampleSettings.from_settings(as_settings(settings, source=source).sample)


def check_segment_join(
    frames: dict[str, pd.DataFrame | None], files: dict[str, Path]
) -> tuple[dict[str, pd.DataFrame | None], list[Problem], tuple[str, ...]]:
    """Survey segment names against segments.csv, after trimming and case-folding.

    Returns (frames with the survey's segment names spelled as in segments.csv, problems,
    segments.csv segments without survey answers). A survey segment missing from segments.csv,
    or a survey without segments against a segments.csv with several, is a problem listing both
    sides with the closest matches. A name that came from respondents.csv is reported there,
    once, rather than in every instrument it reached through the join.
    """
    segments = frames.get("segments")
    survey = {k: frames.get(k) for k in ("van_westendorp", "maxdiff", "conjoint")}
    survey = {k: v for k, v in survey.items() if v is not None}
    if segments is None or not survey:
        return frames, [], ()
    known = [str(x) for x in segments["segment"].dropna()]
    seg_file = segments.attrs.get("source", "segments.csv")
    sources = (
        {"respondents": frames["respondents"]} if frames.get("respondents") is not None else {}
    )
    sources.update(survey)
    said = sorted(
        {str(x) for f in sources.values() for x in f["segment"].dropna().unique()}
        - {RESERVED_SEGMENT}
    )
    problems: list[Problem] = []
    answered: set[str] = set()
    reported: set[str] = set()
    frames = dict(frames)
    for key, frame in sources.items():
        name = str(frame.attrs.get("source", key))
        names = [str(x) for x in frame["segment"].dropna().unique()]
        if names == [RESERVED_SEGMENT]:
            if len(known) > 1:
                problems.append(_no_segments_problem(name, key, known, seg_file))
            else:
                answered.update(known)
            continue
        spelled, unknown = match_segments(names, known)
        for bad in unknown:
            if bad in reported:
                continue
            reported.add(bad)
            first = frame.loc[frame["segment"] == bad].drop_duplicates("respondent_id")
            problems.append(
                Problem(
                    name,
                    int(first["row"].iloc[0]),
                    "segment",
                    f"a segment of {seg_file} ({', '.join(known)}){suggestion(bad, known)}; the survey has "
                    f"{', '.join(said)}. Names are matched after trimming and case-folding only: rename one side",
                    bad,
                    count=len(first),
                    examples=tuple((int(r), bad) for r in first["row"].head(3)),
                )
            )
        if spelled and any(k != v for k, v in spelled.items()):
            out = frame.copy()
            out["segment"] = out["segment"].replace(spelled)
            out.attrs.update(frame.attrs)
            frames[key] = out
        if key != "respondents":
            answered.update(spelled.values())
    unpriced = tuple(k for k in known if k not in answered)
    return frames, problems, unpriced


def _no_segments_problem(name: str, key: str, known: list[str], seg_file: str) -> Problem:
    return Problem(
        name,
        None,
        "segment",
        f"a segment for every respondent, to join with the {len(known)} segments of {seg_file} ({', '.join(known)}): "
        "add a 'segment' column to this file, or a respondents.csv (respondent_id, segment) named in [data] respondents; "
        "a column with another name can be mapped with [columns."
        + FILE_KINDS[key]
        + '] segment = "<its name>"',
        "no segment column (every respondent is in 'all')",
    )


def _check_item_labels(
    config: StudySettings, maxdiff: pd.DataFrame | None, source: str
) -> list[Problem]:
    """A ``[maxdiff.items]`` code missing from the data while a close unlabelled code is there
    is a typo: it would leave one item without its label and one label without its item."""
    labels = [str(k) for k in config.maxdiff.items]
    if maxdiff is None or not labels:
        return []
    seen = [str(x) for x in pd.unique(maxdiff["item"].dropna())]
    unlabelled = [x for x in seen if x not in labels]
    return [
        Problem(
            source,
            None,
            f"maxdiff.items.{code}",
            "an item code of "
            + str(maxdiff.attrs.get("source", "maxdiff.csv"))
            + suggestion(code, unlabelled),
            code,
        )
        for code in labels
        if code not in seen and suggestion(code, unlabelled)
    ]


def _check_attributes(
    config: StudySettings, conjoint: pd.DataFrame | None, source: str
) -> list[Problem]:
    """A ``[conjoint.attributes]`` name that is no attribute column of the conjoint file would be
    ignored, silently changing that attribute's level order: an error with the closest column."""
    named = [str(k) for k in config.conjoint.attributes if k != "price"]
    if conjoint is None or not named:
        return []
    columns = [str(c) for c in conjoint.attrs.get("attributes", ())]
    file = str(conjoint.attrs.get("source", "conjoint.csv"))
    return [
        Problem(
            source,
            None,
            f"conjoint.attributes.{a}",
            f"an attribute column of {file} ({', '.join(columns) or 'none'})"
            + suggestion(a, columns),
            a,
        )
        for a in named
        if a not in columns
    ]


def check_settings_against_data(
    config: StudySettings,
    source: str,
    *,
    maxdiff: pd.DataFrame | None = None,
    conjoint: pd.DataFrame | None = None,
) -> list[Problem]:
    """The study's names of things in the data (``[maxdiff.items]`` codes, ``[conjoint.attributes]``
    names) checked against the validated files: ``wtp run`` and the single-file commands with
    ``--study`` both call this, so a study resolves the same way in each."""
    return _check_item_labels(config, maxdiff, source) + _check_attributes(config, conjoint, source)


def load_study(path: str | Path, *, nms_scale: str | None = None) -> Study:
    """Read ``study.toml`` and every input file it names (or the contract's default file names).

    All files are validated before anything is returned; problems from every file are reported
    together in one :class:`~wtp.io.InputError`.
    """
    folder, settings, config = load_settings(path)
    toml_name = str(folder / "study.toml")
    problems: list[Problem] = []
    # a misspelt [data] key was refused by the schema (wtp.settings) in load_settings
    files: dict[str, Path] = {}
    for key in DEFAULT_FILES:
        try:
            found = data_path(folder, key, config)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if found is not None:
            files[key] = found
    if problems:
        raise InputError(problems)

    frames: dict[str, pd.DataFrame | None] = dict.fromkeys(DEFAULT_FILES)

    def attempt(key, fn):
        try:
            frames[key] = fn()
        except InputError as exc:
            problems.extend(exc.problems)

    layouts = {}
    try:
        for key in DEFAULT_FILES:
            layouts[key] = input_layout(settings, FILE_KINDS[key], source=toml_name)
    except InputError as exc:
        raise InputError(exc.problems) from None
    if "respondents" in files:
        attempt(
            "respondents",
            lambda: validate_respondents(
                read_table(files["respondents"]), layout=layouts["respondents"]
            ),
        )
    respondents = frames["respondents"]
    validators = {
        "van_westendorp": validate_vw,
        "maxdiff": validate_maxdiff,
        "conjoint": validate_conjoint,
    }
    for key, validate in validators.items():
        if key in files:
            attempt(
                key,
                lambda k=key, v=validate: attach_segments(
                    v(read_table(files[k]), layout=layouts[k]), respondents
                ),
            )
    if "segments" in files:
        need = "customers" not in files
        attempt(
            "segments",
            lambda: validate_segments(
                read_table(files["segments"]), need_arpa_churn=need, layout=layouts["segments"]
            ),
        )
    if "customers" in files:
        seg_names = None if frames["segments"] is None else frames["segments"]["segment"].tolist()
        attempt(
            "customers",
            lambda: validate_customers(
                read_table(files["customers"]), segments=seg_names, layout=layouts["customers"]
            ),
        )
    if "respondents" in files and frames["respondents"] is None:
        # respondents.csv itself is bad (reported above): without it the instruments have no
        # segments, and saying so for each of them would only repeat its problems
        join_problems, unpriced = [], ()
    else:
        frames, join_problems, unpriced = check_segment_join(frames, files)
    respondents = frames["respondents"]  # its segment names now spelled as in segments.csv
    problems.extend(join_problems)
    problems.extend(
        check_settings_against_data(
            config, toml_name, maxdiff=frames.get("maxdiff"), conjoint=frames.get("conjoint")
        )
    )
    if problems:
        raise InputError(problems)

    info = config.study
    if (
        info.as_of is not None
        and not pd.Timestamp.min < pd.Timestamp(info.as_of) < pd.Timestamp.max
    ):
        raise InputError(
            Problem(toml_name, None, "study.as_of", "a date between 1677 and 2262", str(info.as_of))
        )
    as_of = pd.Timestamp(info.as_of) if info.as_of is not None else None
    if nms_scale is not None:
        settings.setdefault("van_westendorp", {})["nms_scale"] = nms_scale
        config = dataclasses.replace(
            config, van_westendorp=dataclasses.replace(config.van_westendorp, nms_scale=nms_scale)
        )
    instruments = ("van_westendorp", "maxdiff", "conjoint", "customers")
    order = segment_order(frames["segments"], respondents, [frames[k] for k in instruments])
    # rows in the study's segment order, so that every stage meets the segments in that order
    for key in instruments:
        frames[key] = sort_by_segment(frames[key], order)
    return Study(
        folder=folder,
        name=info.name if info.name is not None else folder.name,
        currency=info.currency,
        price_unit=info.price_unit,
        period=info.period,
        as_of=as_of,
        config=config,
        settings=settings,
        files=files,
        respondents=respondents,
        vw=frames["van_westendorp"],
        maxdiff=frames["maxdiff"],
        conjoint=frames["conjoint"],
        segments=frames["segments"],
        customers=frames["customers"],
        segment_order=tuple(order),
        unpriced_segments=unpriced,
    )


def settings_only(path: str | Path | None) -> tuple[Path | None, dict[str, Any]]:
    """Settings of a study (folder or toml) without reading its data; ``(None, {})`` for None."""
    if path is None:
        return None, {}
    return read_settings(path)


def config_only(path: str | Path | None) -> tuple[Path | None, dict[str, Any], StudySettings]:
    """Typed settings of a study without reading its data; defaults for None."""
    if path is None:
        return None, {}, StudySettings()
    return load_settings(path)
