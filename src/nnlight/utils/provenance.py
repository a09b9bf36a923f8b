"""What a result was computed on, recorded with every run and benchmark."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch


def device_name() -> str:
    """The GPU's name, else the CPU model (from /proc/cpuinfo where available)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def source_revision() -> dict[str, str | bool | None]:
    """The git commit of nnlight's source and whether it had uncommitted changes (None outside a checkout).

    Read once per process: the code a process runs is what it imported, even if the checkout moves on while a
    sweep's later jobs train in the same process."""
    source = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=source)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"git_revision": revision, "git_uncommitted_changes": bool(changes) if changes is not None else None}
