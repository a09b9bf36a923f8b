"""The one place that names the files of a run folder, a model (configuration) folder, a dataset's results
and a prediction folder. Train, predict, evaluate and selection all find their artifacts through these.

::

    <results>/<Dataset>/                              DatasetResults
        <configuration>/<experiment>[<overrides>]/    ModelFolder (a trained configuration, all its folds)
            fold_<k>/                                 RunFolder (one trained fold)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nnlight.utils.names import MAX_NAME_BYTES, folder_name

CheckpointName = Literal["final", "best", "last"]
CHECKPOINT_NAMES: tuple[CheckpointName, ...] = ("final", "best", "last")
ENSEMBLE_NAME_BYTES = MAX_NAME_BYTES - 55  # room for the folder's own suffixes and temp names


@dataclass(frozen=True)
class RunFolder:
    """One trained fold: checkpoints, copies of the plan and dataset files, logs, validation predictions."""

    path: Path

    @property
    def fold(self) -> str:
        return self.path.name.removeprefix("fold_")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, name: CheckpointName) -> Path:
        return self.checkpoints / f"{name}.ckpt"

    @property
    def plan(self) -> Path:
        """The plan the fold was trained with (resolved generated config, overrides included)."""
        return self.path / "plan.json"

    @property
    def inference(self) -> Path:
        """The training choices inference must repeat (tile size, mirror axes, network options)."""
        return self.path / "inference.json"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    @property
    def run_config(self) -> Path:
        """The run's identity: the training config it was made with (and its hash), checked on every restart."""
        return self.path / "run_config.json"

    @property
    def stats(self) -> Path:
        """Written when training (and validation) finished: cost figures and the run's summary metrics."""
        return self.path / "run_stats.json"

    @property
    def lock(self) -> Path:
        """Held (an OS lock) by the process training the run; names it (pid, host, since) for a second one."""
        return self.path / ".lock"

    @property
    def failure(self) -> Path:
        """Written when the run failed: the error and its traceback (removed once the run finishes)."""
        return self.path / "failure.json"

    @property
    def hydra_config(self) -> Path:
        return self.path / ".hydra" / "config.yaml"

    @property
    def hydra_overrides(self) -> Path:
        return self.path / ".hydra" / "overrides.yaml"

    @property
    def dataset_json(self) -> Path:
        return self.path / "dataset.json"

    @property
    def fingerprint(self) -> Path:
        return self.path / "fingerprint.json"

    def nnunet_plans(self, plans_name: str) -> Path:
        return self.path / f"{plans_name}.json"

    @property
    def progress_plot(self) -> Path:
        return self.path / "progress.png"

    @property
    def validation(self) -> Path:
        return self.path / "validation"

    @property
    def validation_overlays(self) -> Path:
        """``<case>.png`` per validation case: image | label | prediction, with the case's Dice."""
        return self.path / "validation_overlays"

    @property
    def validation_summary(self) -> Path:
        return PredictionFolder(self.validation).summary

    def is_trained_run(self) -> bool:
        return self.plan.is_file()


@dataclass(frozen=True)
class ModelFolder:
    """``<configuration>/<experiment>[<overrides>]``: the folds of one trained configuration."""

    path: Path

    @property
    def name(self) -> str:
        """``<configuration>/<experiment>``, as tables show it."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def is_debug(self) -> bool:
        """Trained under a ``debug=`` profile (the choice is always part of the name): never a result."""
        name = self.path.name
        return "+debug-" in name or "[debug=" in name or ",debug=" in name  # named today, or by an earlier nnlight

    def fold(self, fold: int | str) -> RunFolder:
        return RunFolder(self.path / f"fold_{fold}")

    def runs(self) -> list[RunFolder]:
        """Every fold that train.py has set up (its plan.json is written before training starts)."""
        return sorted((RunFolder(p) for p in self.path.glob("fold_*") if (p / "plan.json").is_file()),
                      key=lambda r: r.path)

    @property
    def crossval(self) -> Path:
        """Every fold's validation predictions merged (evaluate.py)."""
        return self.path / "crossval"

    @property
    def postprocessing(self) -> Path:
        return self.path / "postprocessing.json"

    @property
    def predicted_next_stage(self) -> Path:
        """A low-res model's cross-validation segmentations on the cascade's grid (``<case>.npy``), each written by
        the fold that held the case out: what the cascade's full-resolution stage trains on."""
        return self.path / "predicted_next_stage"

    def next_stage_segmentation(self, case_id: str) -> Path:
        return self.predicted_next_stage / f"{case_id}.npy"


@dataclass(frozen=True)
class Comparison:
    """``<results>/<Dataset>/comparisons/<name>/``: one evaluation's candidates, scores and selection."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best_configuration(self) -> Path:
        return self.path / "best_configuration.json"

    @property
    def postprocessing(self) -> Path:
        """The post-processing chosen for the selected model or ensemble."""
        return self.path / "postprocessing.json"

    @property
    def cv_table(self) -> Path:
        return self.path / "cv_results.md"

    @property
    def cv_csv(self) -> Path:
        return self.path / "cv_results.csv"

    @property
    def cv_plot(self) -> Path:
        return self.path / "cv_results.png"


@dataclass(frozen=True)
class DatasetResults:
    """``<results>/<Dataset>``: every trained model of a dataset and the comparison between them."""

    path: Path

    def model_folders(self) -> list[ModelFolder]:
        return [ModelFolder(p) for p in sorted(self.path.glob("*/*")) if p.is_dir() and p.name != "crossval"]

    @property
    def legacy_best_configuration(self) -> Path:
        """Where nnlight-evaluate wrote its one selection before comparisons were named (still read)."""
        return self.path / "best_configuration.json"

    @property
    def comparisons(self) -> Path:
        """``comparisons/<name>/``: one folder per evaluation, none replacing another; ``latest.json`` names the
        newest (what ``model=best`` uses unless ``best=<name>``)."""
        return self.path / "comparisons"

    @property
    def latest_comparison(self) -> Path:
        return self.comparisons / "latest.json"

    def comparison(self, name: str) -> Comparison:
        return Comparison(self.comparisons / name)

    def latest(self) -> Comparison | None:
        """The newest comparison (``latest.json``), None before the first."""
        if not self.latest_comparison.is_file():
            return None
        name = json.loads(self.latest_comparison.read_text()).get("name")
        return self.comparison(folder_name(name, str(self.latest_comparison))) if name else None  # never a path

    def ensemble(self, members: list[ModelFolder]) -> Path:
        """``<configuration>__<experiment>+...``; past a file name's length limit the configurations alone plus a
        hash of the full name."""
        name = "+".join(m.name.replace("/", "__") for m in members)
        if len(name.encode()) > ENSEMBLE_NAME_BYTES:
            name = "+".join(m.path.parent.name for m in members) + "#" + hashlib.sha256(name.encode()).hexdigest()[:12]
        return self.path / "ensembles" / name


@dataclass(frozen=True)
class PredictionFolder:
    """A folder of segmentations (predict.py's output, a fold's validation/, crossval/, an ensemble)."""

    path: Path

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def summary_csv(self) -> Path:
        return self.path / "summary.csv"

    @property
    def made_by(self) -> Path:
        """Which model (folders, folds, checkpoint) and settings wrote these predictions: predict.py refuses to
        mix another model's predictions in."""
        return self.path / "model.json"

    @property
    def config(self) -> Path:
        """How these predictions were made (predict.py's resolved config)."""
        return self.path / ".hydra" / "config.yaml"

    @property
    def overrides(self) -> Path:
        return self.path / ".hydra" / "overrides.yaml"

    @property
    def failed(self) -> Path:
        """The cases predict.py could not read or preprocess, each with its error (gone once none is left)."""
        return self.path / "failed.json"

    @property
    def failed_lock(self) -> Path:
        """Taken while ``failed.json`` is updated: jobs predicting shards of one cohort share it."""
        return self.path / ".failed.lock"

    def segmentation(self, case_id: str, file_ending: str) -> Path:
        return self.path / f"{case_id}{file_ending}"

    def probabilities(self, case_id: str) -> Path:
        return self.path / f"{case_id}.npz"
