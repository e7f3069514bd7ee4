"""A study folder: ``study.toml`` plus the input files it names, read and validated once.

>>> study = load_study("surveys/demo")          # doctest: +SKIP
>>> study.vw.head()                            # validated, with segment and weight
>>> study.item_labels["sso"]
'Single sign-on'
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wtp.io import (
    InputError,
    Problem,
    attach_segments,
    read_table,
    validate_conjoint,
    validate_customers,
    validate_maxdiff,
    validate_respondents,
    validate_segments,
    validate_vw,
)
from wtp.schema import segment_order, sort_by_segment

INSTRUMENTS = ("van_westendorp", "maxdiff", "conjoint", "segments", "customers")
DEFAULT_FILES = {
    "respondents": "respondents.csv",
    "van_westendorp": "vw.csv",
    "maxdiff": "maxdiff.csv",
    "conjoint": "conjoint.csv",
    "segments": "segments.csv",
    "customers": "customers.csv",
}
# other spellings analysts use for the same sections
_ALIASES = {"vw": "van_westendorp", "cbc": "conjoint"}


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
    respondents: pd.DataFrame | None = None
    vw: pd.DataFrame | None = None
    maxdiff: pd.DataFrame | None = None
    conjoint: pd.DataFrame | None = None
    segments: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    # the one segment order of the study (wtp.schema.segment_order): every table and page uses it
    segment_order: tuple[str, ...] = ()

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
        labels = dict(self.settings.get("maxdiff", {}).get("items", {}))
        return {str(k): str(v) for k, v in labels.items()}

    @property
    def attribute_levels(self) -> dict[str, list[str]]:
        """Conjoint attribute → ordered levels from ``[conjoint.attributes]`` (first = reference)."""
        attrs = self.settings.get("conjoint", {}).get("attributes", {})
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
        raise InputError(Problem(str(path), None, None, "a study folder with a study.toml", "no such file"))
    return path


def read_settings(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Parse ``study.toml``; returns (folder, settings)."""
    toml_path = _find_toml(Path(path))
    from wtp.io import remember_input

    remember_input(toml_path)
    try:
        settings = tomllib.loads(toml_path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(Problem(str(toml_path), None, None, "valid TOML", str(exc))) from exc
    return toml_path.parent, settings


def load_study(path: str | Path, *, nms_scale: str | None = None) -> Study:
    """Read ``study.toml`` and every input file it names (or the contract's default file names).

    All files are validated before anything is returned; problems from every file are reported
    together in one :class:`~wtp.io.InputError`.
    """
    folder, settings = read_settings(path)
    meta = settings.get("study", {})
    data = {_ALIASES.get(k, k): v for k, v in settings.get("data", {}).items()}
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    for key, default in DEFAULT_FILES.items():
        if key in data:
            p = (folder / str(data[key])).resolve()
            if not p.exists():
                problems.append(Problem(str(folder / "study.toml"), None, f"data.{key}", "a file that exists", str(data[key])))
                continue
            files[key] = p
        elif (folder / default).exists() and "data" not in settings:
            files[key] = folder / default
    if problems:
        raise InputError(problems)

    frames: dict[str, pd.DataFrame | None] = dict.fromkeys(DEFAULT_FILES)

    def attempt(key, fn):
        try:
            frames[key] = fn()
        except InputError as exc:
            problems.extend(exc.problems)

    if "respondents" in files:
        attempt("respondents", lambda: validate_respondents(read_table(files["respondents"])))
    respondents = frames["respondents"]
    validators = {
        "van_westendorp": validate_vw,
        "maxdiff": validate_maxdiff,
        "conjoint": validate_conjoint,
    }
    for key, validate in validators.items():
        if key in files:
            attempt(key, lambda k=key, v=validate: attach_segments(v(read_table(files[k])), respondents))
    if "segments" in files:
        need = "customers" not in files
        attempt("segments", lambda: validate_segments(read_table(files["segments"]), need_arpa_churn=need))
    if "customers" in files:
        seg_names = None if frames["segments"] is None else frames["segments"]["segment"].tolist()
        attempt("customers", lambda: validate_customers(read_table(files["customers"]), segments=seg_names))
    if problems:
        raise InputError(problems)

    as_of = meta.get("as_of")
    try:
        as_of = pd.Timestamp(str(as_of)) if as_of else None
    except ValueError as exc:
        raise InputError(Problem(str(folder / "study.toml"), None, "study.as_of", "a date YYYY-MM-DD", as_of)) from exc
    if nms_scale is not None:
        settings.setdefault("van_westendorp", {})["nms_scale"] = nms_scale
    instruments = ("van_westendorp", "maxdiff", "conjoint", "customers")
    order = segment_order(frames["segments"], respondents, [frames[k] for k in instruments])
    # rows in the study's segment order, so that every stage meets the segments in that order
    for key in instruments:
        frames[key] = sort_by_segment(frames[key], order)
    return Study(
        folder=folder,
        name=str(meta.get("name", folder.name)),
        currency=str(meta.get("currency", "USD")),
        price_unit=str(meta.get("price_unit", "per account per month")),
        period=str(meta.get("period", "month")),
        as_of=as_of,
        settings=settings,
        files=files,
        respondents=respondents,
        vw=frames["van_westendorp"],
        maxdiff=frames["maxdiff"],
        conjoint=frames["conjoint"],
        segments=frames["segments"],
        customers=frames["customers"],
        segment_order=tuple(order),
    )


def settings_only(path: str | Path | None) -> tuple[Path | None, dict[str, Any]]:
    """Settings of a study (folder or toml) without reading its data; ``(None, {})`` for None."""
    if path is None:
        return None, {}
    return read_settings(path)
