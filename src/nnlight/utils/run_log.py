"""Everything a stage prints also goes to a log file beside its results (``train.log``, ``predict.log``, ...).

Standard output and error are teed line by line: a progress bar's line is kept in its final state (the text
after its last carriage return), colour and cursor codes are dropped, so the file reads like the terminal did at
the end. Python logging already writes its own lines there (Hydra's file handler, for training).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from nnlight.utils.errors import UserError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class _LogFile:
    """Appends lines to ``path`` once its folder exists (a stage creates it when its checks passed), never
    creating it: lines before that wait in memory. ``deferred``: every line waits until the stage ends."""

    def __init__(self, path: Path, deferred: bool) -> None:
        self.path, self.deferred = path, deferred
        self.waiting: list[str] = []

    def write_lines(self, lines: list[str], final: bool = False) -> None:
        self.waiting += lines
        if self.waiting and (final or not self.deferred) and self.path.parent.is_dir():
            with contextlib.suppress(OSError), self.path.open("a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in self.waiting))
                self.waiting = []


class _Tee(io.TextIOBase):
    def __init__(self, stream: TextIO, log: _LogFile) -> None:
        self.stream, self.log, self.pending = stream, log, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *lines, self.pending = (self.pending + text).split("\n")
        cleaned = [_ANSI.sub("", line.rsplit("\r", 1)[-1]) for line in lines]
        self.log.write_lines([line for line in cleaned if line.strip()])
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # progress bars keep drawing as they would on the terminal
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase declares a plain attribute; a tee reads it
        return getattr(self.stream, "encoding", "utf-8")


@contextlib.contextmanager
def logging_output_to(path: Path | None, deferred: bool = False) -> Iterator[None]:
    """Tee stdout and stderr into ``path`` (appended) for the duration (nothing when ``path`` is None).

    ``deferred`` (a stage writing into a folder that may hold someone else's files): the log is written when the
    stage ends, and not at all when it refused the user's input (``UserError``) — a refusal writes nothing.
    """
    if path is None:
        yield
        return
    log = _LogFile(path, deferred)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)
    refused = False
    try:
        yield
    except UserError:
        refused = True
        raise
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if not (deferred and refused):
            log.write_lines([], final=True)  # the folder may have appeared since the last line


class _NoAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


class _FileOnly(logging.Filter):
    """Lightning's accelerator banner ("GPU available: ...", "TPU available: ...") is for the log file."""

    BANNER = ("GPU available", "TPU available", "HPU available", "IPU available", "LOCAL_RANK")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.BANNER)


def lightning_logs_once(verbose: bool = False) -> None:
    """Lightning prints its INFO lines through a console handler of its own and again through the root logger
    Hydra set up for a run (console and train.log): keep Hydra's, and leave out Lightning's advertising tip.
    Its accelerator banner goes only to the log file, unless ``verbose``."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            # imported before logging was set up, Lightning gives these a console handler and stops propagation
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    for handler in logging.getLogger().handlers:
        screen = type(handler) is logging.StreamHandler
        if screen and not verbose and not any(isinstance(f, _FileOnly) for f in handler.filters):
            handler.addFilter(_FileOnly())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvertisement) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdvertisement())
