"""Worker processes die with their parent, even when it is killed with SIGKILL (no orphans holding memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli


def _children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and the Linux parent-death signal")
def test_workers_die_when_the_main_process_is_killed() -> None:
    script = ("import time\nfrom nnlight.utils.parallel import map_with_progress\n"
              "list(map_with_progress(time.sleep, [120, 120], 2, 'sleeping'))\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [p for p in _children(parent.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore")]
    assert len(workers) == 2, "the workers never started"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"worker(s) {left} outlived their killed parent"


def _timed(item: tuple[str, float, str]) -> tuple[str, float, float]:
    """A worker's job: sleep, and say when it ran."""
    name, seconds, _ = item
    start = time.monotonic()
    time.sleep(seconds)
    return name, start, time.monotonic()


def test_items_run_side_by_side_only_as_far_as_their_needs_fit_the_budget() -> None:
    """Needs 6, 5, 3, 2, 2 within a budget of 8 on 3 workers: 6 runs first and beside 2 only, never beside 5; the
    largest goes first; every item runs once."""
    from nnlight.utils.parallel import map_within_budget

    needs = {"a": 3, "b": 6, "c": 2, "d": 5, "e": 2}
    items = [(name, 0.6, "") for name in needs]
    results = list(map_within_budget(_timed, items, list(needs.values()), 8, 3, "test"))
    assert sorted(r[0] for r in results) == sorted(needs)
    spans = {name: (start, end) for name, start, end in results}
    assert min(spans, key=lambda n: spans[n][0]) == "b"
    for name, (start, _) in spans.items():  # at each start, what runs together fits
        together = [n for n, (s, e) in spans.items() if s <= start < e]
        assert sum(needs[n] for n in together) <= 8, (name, together)
        assert len(together) <= 3


def test_an_item_larger_than_the_budget_runs_alone() -> None:
    from nnlight.utils.parallel import map_within_budget

    results = list(map_within_budget(_timed, [("big", 0.5, ""), ("small", 0.5, "")], [10, 1], 4, 2, "test"))
    spans = {name: (start, end) for name, start, end in results}
    assert spans["small"][0] >= spans["big"][1]
