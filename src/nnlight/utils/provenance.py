"""What a result was computed on, recorded with every run and benchmark."""

from __future__ import annotations

import platform
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
