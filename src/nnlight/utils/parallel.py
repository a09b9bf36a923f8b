"""Run a function over many items in worker processes with a progress bar."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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


def start_worker(parent: int, threads: int | None) -> None:
    """Worker initializer: dies with its parent (:func:`die_with_parent`) and, with ``threads``, runs its numeric
    libraries on that many threads, so that workers x threads stay within the cores (more threads than cores spin
    against each other: CPU time spent waiting, most of it system time)."""
    die_with_parent(parent)
    if threads is not None:
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[variable] = str(threads)  # read when torch / numpy's BLAS load, after this
        if "torch" in sys.modules:  # already imported (by the function's module): set it directly
            sys.modules["torch"].set_num_threads(threads)


def map_with_progress(fn: Callable[[T], R], items: Iterable[T], num_workers: int, desc: str) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order.

    ``num_workers=0`` runs in this process (easy debugging). Workers are spawned, not forked, so a
    parent that already started torch threads is safe.
    """
    items = list(items)
    yield from map_within_budget(fn, items, [0] * len(items), 0, num_workers, desc)


def map_within_budget(fn: Callable[[T], R], items: Sequence[T], needs: Sequence[int], budget: int,
                      num_workers: int, desc: str, threads_per_worker: int | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order, the item with the largest need first.

    At most ``num_workers`` items run at once, and only as many as their ``needs`` (e.g. estimated peak memory in
    bytes) fit in ``budget`` together: an item that does not fit beside the running ones waits for them, so the
    largest run alone and the small ones side by side (an item larger than the budget runs alone; callers refuse
    such items before). ``num_workers=0`` runs in this process.
    """
    order = sorted(range(len(items)), key=lambda i: -needs[i])
    if not order:
        return
    with progress(total=len(order), desc=desc, unit="case") as bar:
        if num_workers <= 0:
            for i in order:
                yield fn(items[i])
                bar.update()
            return
        check_main_guard()
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=min(num_workers, len(order)), mp_context=context,
                                     initializer=start_worker, initargs=(os.getpid(), threads_per_worker)) as pool:
                running: dict[Future[R], int] = {}
                waiting = iter(order)
                following = next(waiting, None)
                while following is not None or running:
                    while following is not None and len(running) < num_workers and (
                            not running or sum(running.values()) + needs[following] <= budget):
                        running[pool.submit(fn, items[following])] = needs[following]
                        following = next(waiting, None)
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        del running[future]
                        yield future.result()
                        bar.update()
        except BrokenProcessPool:
            raise UserError(f"{desc}: a worker process died, most likely out of memory. Rerun with fewer workers "
                            "(num_workers=1) or on a machine with more RAM") from None
