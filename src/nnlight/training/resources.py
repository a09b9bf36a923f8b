"""What a training run cost: wall time, time per epoch, peak host and device memory.

Measured by a callback so every run records it the same way. Peak host memory is the main process's
high-water mark (``VmHWM``), reset when fitting starts so that jobs run one after another in one process
(Hydra's basic launcher) each report their own; data-loading and export workers are child processes,
reported apart.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

_PROC_SELF = Path("/proc/self")


def _reset_host_peak() -> bool:
    """Linux resets the high-water mark when "5" is written to clear_refs; elsewhere the process peak stays."""
    try:
        (_PROC_SELF / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def host_peak_mb() -> float:
    status = _PROC_SELF / "status"
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return _max_rss_mb(resource.RUSAGE_SELF)


def child_processes_peak_mb() -> float:
    """The largest finished child process (data-loading and export workers) of this process so far."""
    return _max_rss_mb(resource.RUSAGE_CHILDREN)


def _max_rss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class ResourceMonitor(L.Callback):
    """Times the fit and every training epoch and records memory peaks (rank 0's view)."""

    def __init__(self) -> None:
        self.fit_start = 0.0
        self.fit_seconds = 0.0
        self.epoch_start = 0.0
        self.epoch_seconds: list[float] = []
        self.host_peak_is_this_run = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.host_peak_is_this_run = _reset_host_peak()
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_seconds = time.perf_counter() - self.fit_start

    def report(self, device: torch.device) -> dict[str, Any]:
        """The figures of the fit this process ran (a resumed run: the part after the resume)."""
        epochs = self.epoch_seconds
        return {
            "train_seconds": round(self.fit_seconds, 3),
            "epochs_timed": len(epochs),
            "seconds_per_epoch": round(sum(epochs) / len(epochs), 3) if epochs else None,
            "peak_host_memory_mb": round(host_peak_mb(), 1),
            "peak_host_memory_is_this_run": self.host_peak_is_this_run,
            "peak_child_process_memory_mb": round(child_processes_peak_mb(), 1),
            "peak_device_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None,
        }
