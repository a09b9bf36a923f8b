"""Progress of long work, readable where people read it.

On a terminal: tqdm's bar. Where the output goes to a file or a pipe (a CI log, a SLURM ``.out`` file, ``| tee``):
a plain line now and then — when another tenth of the work is done or :data:`PLAIN_INTERVAL_S` seconds have passed,
and at the end — so those files hold no carriage-return frames or escape codes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
PLAIN_INTERVAL_S = 30.0  # at most this long between two plain lines while work goes on


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where progress goes) is a terminal that can redraw a bar."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class Throttle:
    """Says when a plain progress line is due: at the first step, each tenth of ``total`` and every
    :data:`PLAIN_INTERVAL_S` seconds (only the latter when the total is unknown)."""

    def __init__(self, total: int | None) -> None:
        self.total, self.last_time, self.last_tenth = total, time.monotonic(), -1

    def due(self, done: int) -> bool:
        now = time.monotonic()
        tenth = done * 10 // self.total if self.total else self.last_tenth
        if tenth > self.last_tenth or now - self.last_time >= PLAIN_INTERVAL_S:
            self.last_time, self.last_tenth = now, tenth
            return True
        return False


class PlainProgress:
    """The part of tqdm's interface nnlight uses (iterate, ``update``, a context), writing plain lines."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None) -> None:
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.file = iterable, total, desc, unit, file
        self.n, self.start, self.throttle, self.shown = 0, time.monotonic(), Throttle(self.total), -1

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None  # iterated only when made from an iterable, as tqdm
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.throttle.due(self.n):
            self._line()

    def close(self) -> None:
        if self.shown != self.n:
            self._line()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.start
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else f"{self.n}"
        rate = f", {self.n / elapsed:.2f} {self.unit}/s" if elapsed > 0 and self.n else ""
        print(f"{self.desc}: {done} {self.unit}s, {elapsed:.0f} s{rate}", file=self.file or sys.stderr, flush=True)
        self.shown = self.n


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str, unit: str = "it"
             ) -> Any:
    """tqdm on a terminal, :class:`PlainProgress` elsewhere; use as tqdm (iterate it, or ``update()`` it in a
    ``with`` block)."""
    if on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit)
