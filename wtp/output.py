"""Writing results into ``--out``: checked first, locked, staged, made visible in one step.

A run's tables and pages are written into a staging folder and only made visible once the whole
run succeeded. The steps, in order:

=========================  ===================================================================
step                       what happens
=========================  ===================================================================
1. check (before work)     ``--out`` must be a folder or not exist yet, not be one of the
                           run's inputs, and it (or the folder it will be made in) must take
                           a small probe write; it is created only when results are committed
2. lock                    ``.<name>.wtp-lock`` next to ``--out`` (inside it when its parent
                           is read-only), held with ``flock`` for the whole run; a second run
                           into the same folder is refused at once
3. recover and clean       staging folders of dead runs are removed; an interrupted in-place
                           commit is completed from its journal (see below)
4. stage                   results go into ``.<name>.tmp-*`` next to ``--out`` (or
                           ``--out/.wtp-stage-*`` when the parent is read-only)
5. commit                  see the two modes below
6. release                 the lock file is removed
=========================  ===================================================================

Commit, **swap mode** (the parent folder is writable — the usual case): the staging folder
becomes the complete new ``--out``. Files in ``--out`` that wtp did not write (the analyst's own
notes) are hard-linked into it, results of the earlier run that this run does not write again
are not; then the two folders are exchanged with one ``renameat2(RENAME_EXCHANGE)`` call (Linux)
— a reader sees either the whole old or the whole new result set, whatever happens to the
process. Where that call is missing, two renames are used and a crash between them is repaired
by the next run (the old folder is put back).

Commit, **in-place mode** (``--out`` is writable but its parent is not, or ``--out`` holds many
files wtp did not write, or a mount point): files are moved one by one, after a journal
``.wtp-commit`` listing every move was written; a run that finds a journal completes it before
doing anything else, and the manifest is written last. This mode cannot be atomic for an
outside reader; it says so in the journal while it runs.

Stale results are removed only when they are plain files inside ``--out`` listed in a verified
manifest (``.wtp-files``: a header line, then SHA-256, size and a relative path per file; an
entry counts only when it names a regular file under ``--out`` whose size and hash still match).
A copied or hand-written manifest naming ``../victim`` or ``/etc/passwd`` therefore deletes
nothing, and neither does one naming a file the analyst has since edited.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from wtp.errors import InputError, OutputError, Problem

try:
    import fcntl
except ImportError:  # Windows: an exclusive-create lock file instead of flock
    fcntl = None

__all__ = [
    "MANIFEST",
    "OutputFolder",
    "atomic_output_dir",
    "check_output_dir",
    "neutralise_formulas",
    "prepare_output",
    "read_manifest",
    "release_outputs",
    "remember_input",
    "write_csv",
]

MANIFEST = ".wtp-files"
MANIFEST_HEADER = "# wtp results v1: sha256  size  path"
JOURNAL = ".wtp-commit"
_IN_PLACE_STAGE = ".wtp-stage-"
_IN_PLACE_LOCK = ".wtp-lock"
# beyond this many files wtp did not write, hard-linking them into the new folder costs more than
# the atomic swap is worth (someone pointed --out at a busy folder): commit in place instead
MAX_FOREIGN_FOR_SWAP = 2000
_PROBE_BYTES = 64 * 1024
_RENAME_EXCHANGE = 2

# Every file read as input in this process: results are never written over one of them.
_INPUTS: set[Path] = set()
# Output folders prepared (checked and locked) by this process, by resolved path.
_PREPARED: dict[Path, OutputFolder] = {}


def remember_input(path: str | os.PathLike) -> None:
    """Record a file this run reads, so no result is ever written over it."""
    _INPUTS.add(Path(path).resolve())


def _pause(step: str) -> None:
    """A no-op between commit steps; tests replace it to slow a commit down or kill it there."""


# --------------------------------------------------------------------------------------------
# Checking --out


def _label(out: Path) -> str:
    return f"--out {out}"


def check_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Check ``--out`` before any work: a folder (created if missing), not an input, writable.

    A folder that holds inputs is allowed (their files are carried over untouched; a result
    that would replace one is refused at commit).

    Returns the resolved folder. Raises :class:`InputError` (exit 2) for a path that cannot be a
    results folder (a file, a path under a file, one of the inputs) and
    :class:`OutputError` (exit 1) for what the environment refuses (permissions, a full disk).
    """
    out = Path(out)
    label = _label(out)
    for parent in [out, *out.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "an existing file" if parent == out else f"{parent} is a file"
                raise InputError(
                    Problem(
                        label, None, None, "a folder for the results (created if missing)", what
                    )
                )
            break
    real = out.resolve()
    for src in [*inputs, *_INPUTS]:
        src = Path(src).resolve()
        if src == real:
            raise InputError(
                Problem(
                    label,
                    None,
                    None,
                    "a results folder that is not one of this run's inputs",
                    str(src),
                )
            )
    # nothing is created yet (a run that fails on its input leaves no folder behind): the folder,
    # or the nearest one above it that exists, must take a probe write
    existing = next(p for p in [real, *real.parents] if p.exists())
    _probe(existing, label)
    return real


def _probe(folder: Path, label: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".wtp-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{label}: cannot write into the folder: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(f"{label}: cannot write into the folder: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _writable(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(prefix=".wtp-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


# --------------------------------------------------------------------------------------------
# Manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe_relative(text: str) -> PurePosixPath | None:
    """A manifest path that cannot leave the folder: relative, no '..', no empty parts."""
    if not text or "\\" in text or "\0" in text:
        return None
    rel = PurePosixPath(text)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        return None
    if str(rel) != text:
        return None
    return rel


def _plain_file_inside(root: Path, rel: PurePosixPath) -> Path | None:
    """``root/rel`` when it is a regular file reached without any symbolic link, else None."""
    path = root
    for part in rel.parts:
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return path


def read_manifest(folder: str | os.PathLike) -> dict[str, Path]:
    """The results a verified wtp manifest in ``folder`` lists: relative path → file.

    Only entries that name a regular file under ``folder`` (no ``..``, no absolute path, no
    symbolic link on the way) whose size and SHA-256 still match are returned; anything else —
    a manifest without wtp's header, a line that does not parse, an edited file — is ignored.
    """
    folder = Path(folder)
    try:
        st = os.lstat(folder / MANIFEST)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 10_000_000:
            return {}
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    lines = text.splitlines()
    if not lines or lines[0] != MANIFEST_HEADER:
        return {}
    out: dict[str, Path] = {}
    for line in lines[1:]:
        parts = line.split("  ", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        digest, size, name = parts
        rel = _safe_relative(name)
        if rel is None:
            continue
        path = _plain_file_inside(folder, rel)
        if path is None or path.stat().st_size != int(size) or _sha256(path) != digest:
            continue
        out[rel.as_posix()] = path
    return out


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# The folder: lock, recovery, staging, commit


@dataclass
class OutputFolder:
    """A checked and locked ``--out`` (see the module docstring for the steps)."""

    path: Path  # as given, for messages
    real: Path  # resolved
    swap: bool  # the parent is writable: stage next to --out and exchange the folders
    _lock_fd: int | None = None
    _lock_path: Path | None = None
    _stages: list[Path] = field(default_factory=list)
    _created: list[Path] = field(default_factory=list)  # parents made for it, removed if unused

    # ---- lock ---------------------------------------------------------------------------------
    def lock(self) -> None:
        lock_path = (
            self.real.parent / f".{self.real.name}.wtp-lock"
            if self.swap
            else self.real / _IN_PLACE_LOCK
        )
        while True:
            try:
                if fcntl is None:
                    # no flock: the file's existence is the lock (a crashed run leaves it; the
                    # message names it so it can be removed by hand)
                    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                else:
                    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, FileExistsError):
                if fcntl is not None:
                    os.close(fd)
                owner = ""
                with contextlib.suppress(OSError, ValueError):
                    owner = f" (process {int(lock_path.read_text().strip())})"
                stale = f" (or delete {lock_path} if no run is active)" if fcntl is None else ""
                raise OutputError(
                    f"{_label(self.path)}: another wtp run is writing into this folder{owner}; "
                    f"wait for it to finish or choose another --out{stale}"
                ) from None
            # the file may have been removed by the run that held it just before we locked it
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd, self._lock_path = fd, lock_path

    def release(self) -> None:
        for stage in self._stages:
            shutil.rmtree(stage, ignore_errors=True)
        self._stages.clear()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None
        if not self.real.exists():
            for folder in self._created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        _PREPARED.pop(self.real, None)

    # ---- recovery -----------------------------------------------------------------------------
    def recover(self) -> None:
        """Finish or undo what a killed run left behind (we hold the lock: no run is alive)."""
        parent, name = self.real.parent, self.real.name
        if self.swap:
            olds = sorted(parent.glob(f".{name}.old-*"))
            if olds and not self.real.exists():
                # killed between the two renames of the fallback swap: put the old result back
                os.rename(olds[-1], self.real)
            for leftover in [*parent.glob(f".{name}.tmp-*"), *parent.glob(f".{name}.old-*")]:
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
        if (self.real / JOURNAL).exists():
            _roll_forward(self.real)
        for leftover in self.real.glob(f"{_IN_PLACE_STAGE}*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
        for probe in self.real.glob(".wtp-probe-*"):
            with contextlib.suppress(OSError):
                probe.unlink()

    # ---- staging and commit -------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A folder to write results into; committed when the block ends without an error."""
        if self.swap:
            stage = Path(tempfile.mkdtemp(prefix=f".{self.real.name}.tmp-", dir=self.real.parent))
        else:
            stage = Path(tempfile.mkdtemp(prefix=_IN_PLACE_STAGE, dir=self.real))
        self._stages.append(stage)
        try:
            yield stage
            self._refuse_input_clash(stage)
            self.commit(stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            with contextlib.suppress(ValueError):
                self._stages.remove(stage)

    def _refuse_input_clash(self, stage: Path) -> None:
        written = [p.relative_to(stage) for p in stage.rglob("*") if p.is_file()]
        clash = [rel for rel in written if (self.real / rel).resolve() in _INPUTS]
        if clash:
            raise InputError(
                [
                    Problem(
                        _label(self.path),
                        None,
                        None,
                        "a folder that does not hold this run's input files",
                        f"input {rel} would be overwritten",
                    )
                    for rel in clash
                ]
            )

    def commit(self, stage: Path) -> None:
        if self.swap:
            try:
                self._commit_swap(stage)
                return
            except _NoSwap:
                pass
        self._commit_in_place(stage)

    def _commit_swap(self, stage: Path) -> None:
        ours = read_manifest(self.real)
        foreign = _foreign_entries(self.real, ours)
        if foreign is None or len(foreign) > MAX_FOREIGN_FOR_SWAP:
            raise _NoSwap
        # the manifest lists this run's results only, never the analyst's files carried over
        written = [
            p.relative_to(stage).as_posix()
            for p in stage.rglob("*")
            if p.is_file() and not p.is_symlink()
        ]
        added: list[Path] = []
        try:
            for rel, kind in foreign:
                target = stage / rel
                if target.exists() or target.is_symlink():
                    continue  # a result of this run with the same name replaces it
                for folder in reversed(target.parents):
                    if stage in folder.parents and not folder.exists():
                        folder.mkdir()
                        added.append(folder)
                if kind == "dir":
                    target.mkdir()
                elif kind == "link":
                    os.symlink(os.readlink(self.real / rel), target)
                else:
                    os.link(self.real / rel, target, follow_symlinks=False)
                added.append(target)
        except OSError as exc:
            # leave the staging folder holding this run's results only, for the in-place commit
            for path in reversed(added):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise _NoSwap from None
            raise
        write_manifest_listing(stage, written)
        with contextlib.suppress(OSError):
            os.chmod(
                stage,
                stat.S_IMODE(os.stat(self.real).st_mode)
                if self.real.exists()
                else 0o777 & ~_umask(),
            )
        _pause("staged")
        if not self.real.exists():
            os.rename(stage, self.real)
            return
        if _exchange(stage, self.real):
            _pause("swapped")  # stage now holds the old result; staging() removes it
            return
        old = self.real.parent / f".{self.real.name}.old-{os.getpid()}"
        os.rename(self.real, old)
        _pause("moved-old")
        os.rename(stage, self.real)
        shutil.rmtree(old, ignore_errors=True)

    def _commit_in_place(self, stage: Path) -> None:
        if stage.parent != self.real:
            # staged next to --out for a swap that could not be done: the journal needs it inside
            self.real.mkdir(exist_ok=True)
            inside = Path(tempfile.mkdtemp(prefix=_IN_PLACE_STAGE, dir=self.real))
            os.rmdir(inside)
            os.rename(stage, inside)
            self._stages.append(inside)
            stage = inside
        ours = read_manifest(self.real)
        written = sorted(
            p.relative_to(stage).as_posix()
            for p in stage.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name not in (MANIFEST, JOURNAL)
        )
        remove = sorted(set(ours) - set(written))
        journal = {"stage": stage.name, "files": written, "remove": remove}
        _write_atomically(self.real / JOURNAL, json.dumps(journal))
        _pause("journal")
        _roll_forward(self.real)


class _NoSwap(Exception):
    """The folder cannot be exchanged whole; commit in place."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two folders (Linux renameat2); False where the call is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):  # not Linux, or a C library without it
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # the file system does not support exchanging
    raise OSError(err, os.strerror(err), str(b))


def _foreign_entries(root: Path, ours: dict[str, Path]) -> list[tuple[str, str]] | None:
    """Everything under ``root`` wtp did not write, as (relative path, kind); None when some
    entry cannot be carried into a new folder (a device, a FIFO, another file system)."""
    if not root.exists():
        return []
    dev = os.stat(root).st_dev
    out: list[tuple[str, str]] = []
    skip = {MANIFEST, JOURNAL, _IN_PLACE_LOCK}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if rel in skip or rel in ours or name.startswith(".wtp-probe-"):
                continue
            st = os.lstat(path)
            if st.st_dev != dev:
                return None
            if stat.S_ISLNK(st.st_mode):
                out.append((rel, "link"))
            elif stat.S_ISDIR(st.st_mode):
                # a folder is carried only when empty; files inside one bring their folders along,
                # and a folder that held nothing but stale results is not recreated
                with os.scandir(path) as entries:
                    if next(entries, None) is None:
                        out.append((rel, "dir"))
            elif stat.S_ISREG(st.st_mode):
                out.append((rel, "file"))
            else:
                return None
            if len(out) > MAX_FOREIGN_FOR_SWAP:
                return out
        # symbolic links to folders are carried as links, not walked
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return out


def _roll_forward(root: Path) -> None:
    """Complete the in-place commit described by ``root/.wtp-commit`` (idempotent)."""
    try:
        journal = json.loads((root / JOURNAL).read_text(encoding="utf-8"))
        stage = root / str(journal["stage"])
        files = [str(f) for f in journal["files"]]
        remove = [str(f) for f in journal["remove"]]
    except (OSError, ValueError, KeyError, TypeError):
        (root / JOURNAL).unlink(missing_ok=True)
        return
    if _safe_relative(stage.name) is None or not stage.name.startswith(_IN_PLACE_STAGE):
        (root / JOURNAL).unlink(missing_ok=True)
        return
    ours = read_manifest(root)
    for name in files:
        rel = _safe_relative(name)
        if rel is None:
            continue
        src = stage / rel
        if src.is_file() and not src.is_symlink():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            _pause("moved-one")
    for name in remove:
        path = ours.get(name)
        if path is not None and path.resolve() not in _INPUTS:
            path.unlink(missing_ok=True)
            _prune_empty(root, path.parent)
    write_manifest_listing(root, files)
    (root / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def write_manifest_listing(root: Path, files: list[str]) -> None:
    """Manifest of exactly ``files`` under ``root`` (in place, the folder also holds others')."""
    lines = [MANIFEST_HEADER]
    for name in sorted(files):
        rel = _safe_relative(name)
        path = None if rel is None else _plain_file_inside(root, rel)
        if path is not None:
            lines.append(f"{_sha256(path)}  {path.stat().st_size}  {name}")
    _write_atomically(root / MANIFEST, "\n".join(lines) + "\n")


def _prune_empty(root: Path, folder: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


# --------------------------------------------------------------------------------------------
# Public entry points


def prepare_output(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()
) -> OutputFolder:
    """Check, lock and clean ``--out`` before any work; the lock holds until released.

    Calling it again for the same folder in the same process returns the prepared folder.
    """
    real = Path(out).resolve()
    if real in _PREPARED:
        return _PREPARED[real]
    real = check_output_dir(out, inputs)
    created = [p for p in real.parents if not p.exists()]
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{_label(out)}: cannot create the folder: {exc.strerror}") from None
    cwd = Path.cwd().resolve()
    # a folder a shell or this process stands in is not swapped from under it
    swap = (
        _writable(real.parent)
        and not os.path.ismount(real)
        and real != cwd
        and real not in cwd.parents
    )
    if not swap and not real.exists():
        raise OutputError(f"{_label(out)}: cannot create the folder: its parent is not writable")
    folder = OutputFolder(path=Path(out), real=real, swap=swap, _created=created)
    try:
        folder.lock()
    except OutputError:
        raise
    except FileNotFoundError:
        raise OutputError(
            f"{_label(out)}: the folder disappeared while it was being locked"
        ) from None
    except OSError as exc:
        raise OutputError(f"{_label(out)}: cannot lock the folder: {exc.strerror}") from None
    _PREPARED[real] = folder
    try:
        folder.recover()
    except BaseException:
        folder.release()
        raise
    return folder


def release_outputs() -> None:
    """Release every folder this process prepared (end of a command)."""
    for folder in list(_PREPARED.values()):
        folder.release()


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Write results into a staging folder, made visible in ``out`` only when the block succeeds.

    A failure inside the block leaves ``out`` exactly as it was. If the folder was not prepared
    by :func:`prepare_output` (the CLI prepares it before any work), it is prepared here and
    released afterwards.
    """
    real = Path(out).resolve()
    owned = real not in _PREPARED
    folder = prepare_output(out)
    try:
        with folder.staging() as stage:
            yield stage
    finally:
        if owned:
            folder.release()


def write_csv(frame, path: str | os.PathLike, *, for_people: bool = False) -> Path:
    """Write a table. Machine tables keep exact values; exports for people neutralise formulas."""
    path = Path(path)
    data = neutralise_formulas(frame) if for_people else frame
    data.to_csv(path, index=False, float_format="%.10g")
    return path


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame):
    """Prefix text cells that a spreadsheet would run as a formula with a single quote."""
    import pandas as pd

    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            s = out[c]
            mask = s.map(lambda v: isinstance(v, str) and v.startswith(_FORMULA_START))
            out[c] = s.where(~mask, "'" + s.astype(str))
    out.columns = [
        ("'" + c) if isinstance(c, str) and c.startswith(_FORMULA_START) else c for c in out.columns
    ]
    return out
