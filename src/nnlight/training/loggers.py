"""Loggers that survive a resumed run, and W&B without its deprecation line."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment


class ResumableCSVLogger(CSVLogger):
    """``metrics.csv`` continued across resumes: Lightning's CSVLogger deletes an existing file when it starts."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / _ExperimentWriter.NAME_METRICS_FILE
        previous = path.read_text() if path.is_file() else ""
        writer = super().experiment
        if previous:
            path.write_text(previous)
            header = next(csv.reader(io.StringIO(previous)), [])
            writer.metrics_keys = sorted(header)  # new keys make the writer rewrite the file with a wider header
        return writer


class OfflineFriendlyWandbLogger(WandbLogger):
    """Lightning's WandbLogger without the ``anonymous`` setting it always passes to ``wandb.init``: wandb
    deprecated it and warns on every run ("The anonymous setting has no effect")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
