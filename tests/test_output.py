"""The results folder: nothing outside --out is ever touched, commits are whole, runs are exclusive."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wtp import output
from wtp.errors import InputError, OutputError
from wtp.output import (
    JOURNAL,
    MANIFEST,
    MANIFEST_HEADER,
    atomic_output_dir,
    prepare_output,
    read_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
# child processes import this checkout's wtp, whatever is installed
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _entry(path: Path, name: str) -> str:
    data = path.read_bytes()
    return f"{hashlib.sha256(data).hexdigest()}  {len(data)}  {name}"


def _result(out: Path, names: list[str], text: str) -> None:
    with atomic_output_dir(out) as tmp:
        for n in names:
            (tmp / n).parent.mkdir(parents=True, exist_ok=True)
            (tmp / n).write_text(text)


@pytest.fixture(autouse=True)
def _release():
    yield
    output.release_outputs()


def test_hostile_manifest_deletes_nothing_outside_out(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    absolute = tmp_path / "elsewhere" / "abs.txt"
    absolute.parent.mkdir()
    absolute.write_text("precious too")
    out = tmp_path / "out"
    out.mkdir()
    linked = out / "link.csv"
    linked.symlink_to(victim)
    # a manifest with wtp's own header and correct hashes, pointing outside: still refused
    lines = [
        MANIFEST_HEADER,
        _entry(victim, "../victim.txt"),
        _entry(absolute, str(absolute)),
        _entry(victim, "link.csv"),
        _entry(victim, "sub/../../victim.txt"),
    ]
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    assert read_manifest(out) == {}
    _result(out, ["price_points.csv"], "new")
    assert victim.read_text() == "precious" and absolute.read_text() == "precious too"
    assert linked.is_symlink() and linked.read_text() == "precious"
    assert (out / "price_points.csv").read_text() == "new"


def test_only_verified_unchanged_results_are_removed(tmp_path):
    out = tmp_path / "out"
    _result(out, ["a.csv", "b.csv", "sub/c.csv"], "old")
    (out / "b.csv").write_text("edited by the analyst")  # no longer what wtp wrote
    (out / "notes.txt").write_text("mine")
    (out / "empty").mkdir()
    _result(out, ["a.csv"], "new")
    assert (out / "a.csv").read_text() == "new"
    assert (out / "b.csv").read_text() == "edited by the analyst"
    assert not (out / "sub").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "empty").is_dir()
    assert set(read_manifest(out)) == {"a.csv"}
    # a manifest without wtp's header (hand-written, or an older wtp) is not trusted
    (out / MANIFEST).write_text("a.csv\n")
    _result(out, ["z.csv"], "new")
    assert (out / "a.csv").exists()


def test_failure_inside_the_block_leaves_the_old_result(tmp_path):
    out = tmp_path / "out"
    _result(out, ["a.csv"], "old")
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "a.csv").write_text("new")
        raise RuntimeError("boom")
    assert (out / "a.csv").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_dead_runs_are_cleaned(tmp_path):
    out = tmp_path / "out"
    _result(out, ["a.csv"], "old")
    (tmp_path / ".out.tmp-dead1").mkdir()
    (tmp_path / ".out.tmp-dead1" / "a.csv").write_text("complete-looking")
    (out / ".wtp-stage-dead2").mkdir()
    (tmp_path / ".other.tmp-x").mkdir()  # another folder's: not ours to clean
    _result(out, ["a.csv"], "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-x", "out"]
    assert not (out / ".wtp-stage-dead2").exists()


def test_out_is_checked_before_work(tmp_path):
    a_file = tmp_path / "f.csv"
    a_file.write_text("x")
    with pytest.raises(InputError, match="existing file"):
        prepare_output(a_file)
    with pytest.raises(InputError, match="is a file"):
        prepare_output(a_file / "sub")
    with pytest.raises(InputError, match="is a file"):
        prepare_output("/dev/null/x")
    with pytest.raises(InputError, match="not one of this run's inputs"):
        prepare_output(tmp_path / "in", inputs=[tmp_path / "in"])
    folder = prepare_output(tmp_path / "new" / "deeper")
    assert folder.swap and not folder.real.exists()  # created only when results are committed
    folder.release()
    assert not (tmp_path / "new").exists()


def test_a_second_run_into_the_same_out_is_refused(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from wtp.output import prepare_output; prepare_output({str(out)!r}); print('locked', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            OutputError,
            match=f"another wtp run is writing into this folder \\(process {holder.pid}\\)",
        ):
            prepare_output(out)
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process
    prepare_output(out).release()


_KILLED = """
import sys, time
from pathlib import Path
import wtp.output as o

out, step, in_place = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if in_place:
    o._writable = lambda folder: False
seen = []
def pause(s):
    seen.append(s)
    if s == step and (s != "moved-one" or seen.count(s) == 3):
        print("at", s, flush=True)
        time.sleep(60)
o._pause = pause
with o.atomic_output_dir(out) as tmp:
    for i in range(20):
        (tmp / f"t{i:02d}.csv").write_text("new")
"""


def _state(out: Path) -> str:
    texts = {p.read_text() for p in out.glob("t*.csv")}
    assert len(list(out.glob("t*.csv"))) == 20 and len(texts) == 1, f"mixed result: {sorted(texts)}"
    return texts.pop()


@pytest.mark.parametrize(
    ("step", "in_place", "before", "after"),
    [
        ("staged", False, "old", "old"),
        ("swapped", False, "new", "new"),
        ("journal", True, "old", "new"),
        ("moved-one", True, None, "new"),
    ],
)
def test_sigkill_mid_commit_leaves_a_whole_result(tmp_path, step, in_place, before, after):
    out = tmp_path / "out"
    _result(out, [f"t{i:02d}.csv" for i in range(20)], "old")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(_KILLED))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), step, "1" if in_place else "0"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().split() == ["at", step]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    if before is not None:
        # swap mode: whole at every instant, whatever kills the run
        assert _state(out) == before
    else:
        # in place the journal marks the folder as mid-commit until the next run completes it
        assert (out / JOURNAL).exists()
    folder = prepare_output(out)  # the next run finishes or undoes it first
    folder.release()
    assert _state(out) == after
    assert not (out / JOURNAL).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_in_place_commit_when_the_parent_is_read_only(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    monkeypatch.setattr(output, "_writable", lambda folder: False)
    _result(out, ["a.csv", "b.csv"], "old")
    folder = prepare_output(out)
    assert not folder.swap
    folder.release()
    _result(out, ["a.csv"], "new")
    assert (out / "a.csv").read_text() == "new" and not (out / "b.csv").exists()
    assert (out / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "a.csv", "mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_result_never_replaces_an_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    src = out / "vw.csv"
    src.write_text("answers")
    output.remember_input(src)
    with pytest.raises(InputError, match="would be overwritten"), atomic_output_dir(out) as tmp:
        (tmp / "vw.csv").write_text("x")
    assert src.read_text() == "answers"
    _result(out, ["price_points.csv"], "new")
    assert src.read_text() == "answers"  # carried into the new folder, same file


def test_the_current_folder_is_never_swapped_away(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    (here / "vw.csv").write_text("answers")
    monkeypatch.chdir(here)
    folder = prepare_output(".")
    assert not folder.swap
    folder.release()
    _result(Path("."), ["price_points.csv"], "new")
    assert Path.cwd() == here.resolve() and (here / "price_points.csv").read_text() == "new"
    assert (here / "vw.csv").read_text() == "answers"


def test_a_file_that_cannot_be_linked_falls_back_to_in_place(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _result(out, ["a.csv", "b.csv"], "old")
    (out / "notes").mkdir()
    (out / "notes" / "mine.txt").write_text("mine")
    (out / "theirs.txt").write_text("someone else's")

    def refuse(src, dst, **kw):
        raise PermissionError(1, "Operation not permitted")  # fs.protected_hardlinks, say

    monkeypatch.setattr(output.os, "link", refuse)
    _result(out, ["a.csv"], "new")
    assert (out / "a.csv").read_text() == "new" and not (out / "b.csv").exists()
    assert (out / "notes" / "mine.txt").read_text() == "mine"
    assert (out / "theirs.txt").read_text() == "someone else's"
    assert set(read_manifest(out)) == {"a.csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
