"""Progress of long work, on a terminal and in CI logs.

Nothing in wtp may be silent for more than ten seconds. Two tools:

=================== =====================================================================
tool                what it shows
=================== =====================================================================
:class:`Reporter`   a status line rewritten in place on a terminal; on a pipe or file
                    (CI logs) one line every ``every`` seconds, and messages as lines
:func:`heartbeat`   "still <doing X> (N s)" from a background thread while a step without
                    its own progress runs (model compilation, a pipeline stage)
=================== =====================================================================

The sampler (:mod:`wtp.hb`) feeds a :class:`Reporter` with :class:`SamplingStatus` records.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

__all__ = ["SamplingStatus", "Reporter", "heartbeat", "quiet"]


@dataclass(frozen=True)
class SamplingStatus:
    """Where a sampling round stands (for progress lines; never part of a result)."""

    round: int
    chains: int
    chains_warming_up: int
    draws_done: int  # kept draws so far, all chains together
    draws_target: int  # kept draws at the next convergence check, all chains together
    warmup_done: int  # warm-up iterations so far, all chains together
    warmup_total: int
    divergences: int
    elapsed_s: float  # since sampling started (all rounds)
    remaining_s: float | None  # to the next convergence check, at the current rate

    def line(self) -> str:
        if self.chains_warming_up:
            phase = f"warm-up {self.warmup_done}/{self.warmup_total}"
        else:
            phase = f"draws {self.draws_done}/{self.draws_target}"
        left = "?" if self.remaining_s is None else f"{self.remaining_s:.0f} s"
        return (
            f"sampling round {self.round}: {self.chains} chains, {phase}, {self.divergences} divergences, "
            f"{self.elapsed_s:.0f} s elapsed, ~{left} to the next convergence check"
        )


class Reporter:
    """Writes progress to ``stream`` (stderr by default).

    On a terminal the status line is rewritten in place; elsewhere (CI logs, a pipe) a status
    line is written every ``every`` seconds so a log never goes quiet for long. ``message``
    always writes a line.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        every: float = 5.0,
        prefix: str = "",
        tty: bool | None = None,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.prefix = prefix
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self._last = -float("inf")
        self._open_line = False
        self._lock = threading.Lock()

    def status(self, status: SamplingStatus | str) -> None:
        text = status.line() if isinstance(status, SamplingStatus) else str(status)
        now = time.monotonic()
        with self._lock:
            if self.tty:
                if now - self._last < 0.25:
                    return
                self.stream.write("\r\x1b[2K" + self.prefix + text)
                self._open_line = True
            else:
                if now - self._last < self.every:
                    return
                self.stream.write(self.prefix + text + "\n")
            self._last = now
            self.stream.flush()

    def message(self, text: str) -> None:
        with self._lock:
            if self._open_line:
                self.stream.write("\r\x1b[2K")
                self._open_line = False
            self.stream.write(self.prefix + text + "\n")
            self.stream.flush()
            # a message is news: the next status line waits its turn
            self._last = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._open_line:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._open_line = False


class _Quiet(Reporter):
    def __init__(self):
        super().__init__(stream=sys.stderr, tty=False)

    def status(self, status) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def quiet() -> Reporter:
    """A reporter that writes nothing (``progress=False``)."""
    return _Quiet()


@contextmanager
def heartbeat(what: str, say, every: float = 5.0) -> Iterator[None]:
    """Call ``say("still <what> (N s)")`` every ``every`` seconds until the block ends."""
    stop = threading.Event()
    t0 = time.monotonic()

    def beat():
        while not stop.wait(every):
            say(f"still {what} ({time.monotonic() - t0:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
