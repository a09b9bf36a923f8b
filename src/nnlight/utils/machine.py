"""What this machine offers a run: the cores it may use and its memory (defaults are sized from these)."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """The cores this process may run on (a container's or a job's limit, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def total_memory_bytes() -> int:
    """Physical memory; 16 GiB where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def available_memory_bytes() -> int:
    """Memory the system can give new work now without swapping (``MemAvailable``); the total where the system
    does not say."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return total_memory_bytes()
