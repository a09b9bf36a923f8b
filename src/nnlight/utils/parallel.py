"""Run a function over many items in worker processes with a progress bar."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar

from nnlight.utils.console_progress import progress
from nnlight.utils.errors import UserError

T = TypeVar("T")
R = TypeVar("R")
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Worker (or child process) initializer: the kernel kills it when its parent dies (even by SIGKILL, which runs no
    cleanup), so a killed plan.py leaves no orphaned workers holding memory (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.MULTILINE)


def check_main_guard() -> None:
    """Worker processes are spawned: each imports the running script again, so a script that calls nnlight at its
    top level would start workers from every worker, which die at once (Python's bootstrapping error) — refused here
    with the fix instead of the misleading "a worker died" later."""
    main = sys.modules.get("__main__")
    script = Path(getattr(main, "__file__", "") or "")
    if script.suffix != ".py" or not script.is_file() or getattr(main, "__spec__", None) is not None:
        return  # an interactive session, python -c, a notebook, python -m <module>: nothing is imported again
    if not _MAIN_GUARD.search(script.read_text(encoding="utf-8", errors="replace")):
        raise UserError(f"{script}: nnlight starts worker processes, and each one imports your script again; put the "
                        "script's code under  if __name__ == \"__main__\":  (or use num_workers=0)")


def map_with_progress(fn: Callable[[T], R], items: Iterable[T], num_workers: int, desc: str) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order.

    ``num_workers=0`` runs in this process (easy debugging). Workers are spawned, not forked, so a
    parent that already started torch threads is safe.
    """
    items = list(items)
    if not items:
        return
    with progress(total=len(items), desc=desc, unit="case") as bar:
        if num_workers <= 0:
            for item in items:
                yield fn(item)
                bar.update()
            return
        check_main_guard()
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=min(num_workers, len(items)), mp_context=context,
                                     initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                futures = [pool.submit(fn, item) for item in items]
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()
        except BrokenProcessPool:
            raise UserError(f"{desc}: a worker process died, most likely out of memory. Rerun with fewer workers "
                            "(num_workers=1) or on a machine with more RAM") from None
