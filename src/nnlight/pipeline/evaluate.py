"""Stage `evaluate`: score a prediction folder, or compare every trained model of a dataset on cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nnlight.data.splits import fold_count
from nnlight.evaluation.folder_evaluation import EvaluationSettings, evaluate_folder
from nnlight.evaluation.metrics import SEMANTIC_SCORES, metric_components, metric_name
from nnlight.evaluation.object_metrics import INSTANCE_SCORES, match_threshold
from nnlight.evaluation.selection import results_table, select_best
from nnlight.pipeline.config_values import plain, plain_list, required
from nnlight.pipeline.plan import resolve_raw_folder
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.utils.components import Component
from nnlight.utils.errors import UserError
from nnlight.utils.folders import DatasetResults, PredictionFolder
from nnlight.utils.names import model_name


def _folds(value: Any, count: int) -> list[str] | None:
    """``folds=0`` or ``folds=[0,1]``: the folds to compare on (null: all of the dataset's splits)."""
    if value is None:
        return None
    folds = [str(f) for f in plain_list(value)]
    wrong = [f for f in folds if not f.isdigit() or int(f) >= count]
    if wrong or not folds:
        raise UserError(f"folds={folds}: choose folds among 0..{count - 1} (e.g. folds=[0,1]), or null for all")
    return sorted(set(folds), key=int)


def _names(value: Any) -> list[str] | None:
    """``models=[3d_fullres/baseline, ...]``: the candidates by name (null: every complete, non-trial model)."""
    if value is None:
        return None
    names = [str(m) for m in plain_list(value)]
    return [model_name(m, "models") for m in names]


def _selection_metric(name: str, instances: bool, metrics: Sequence[Component]) -> str:
    """The score model selection maximizes (minimizes for distances and errors), checked before anything runs."""
    valid = [*SEMANTIC_SCORES, *(INSTANCE_SCORES if instances else ()), *(metric_name(m) for m in metrics)]
    if name not in valid:
        hint = "" if instances or name not in INSTANCE_SCORES else \
            " (object scores need an instance dataset: \"instance_maps\": true in dataset.json)"
        raise UserError(f"selection_metric={name}: not scored for this dataset{hint}; choose one of {', '.join(valid)}")
    return name


def run(cfg: DictConfig) -> dict[str, Any]:
    dataset = str(required(cfg, "dataset", "nnlight-evaluate dataset=Dataset104_DRIVE"))
    raw_folder = resolve_raw_folder(dataset, Path(cfg.paths.raw))
    if not (raw_folder / "dataset.json").is_file():
        raise UserError(f"{raw_folder / 'dataset.json'}: not found; evaluation reads the labels and file ending "
                        "from the raw dataset (set paths.raw or NNLIGHT_RAW)")
    dataset_json = load_dataset_json(raw_folder / "dataset.json")
    reference = Path(str(cfg.reference)) if cfg.reference else raw_folder / "labelsTr"
    if not reference.is_dir():
        raise UserError(f"reference={reference}: folder not found")
    labels = dict(dataset_json.labels)
    metrics = metric_components(plain(cfg.get("metrics")))
    selection_metric = _selection_metric(str(cfg.selection_metric), dataset_json.instance_maps, metrics)
    match_iou = match_threshold(float(cfg.match_iou), "match_iou")
    if cfg.prediction:
        prediction = Path(str(cfg.prediction))
        if not prediction.is_dir():
            raise UserError(f"prediction={prediction}: folder not found")
        summary = evaluate_folder(prediction, reference, EvaluationSettings(
            labels, dataset_json.file_ending, dataset_json.ignore_label, bool(cfg.surface_metrics),
            float(cfg.tolerance_mm), metrics, dataset_json.instance_maps, match_iou),
            num_workers=int(cfg.num_workers),
            allow_missing=bool(cfg.allow_missing))
        skipped = summary["references_without_prediction"]
        print(f"\nScored {summary['cases']} case(s)" + (f" ({skipped} reference case(s) without a prediction were "
                                                       "left out: allow_missing=true)" if skipped else "")
              + "\nForeground mean: " + ", ".join(f"{k} {v:.4f}" for k, v in summary["foreground_mean"].items())
              + f"\n  per case and label: {PredictionFolder(prediction).summary_csv}; all: "
              f"{PredictionFolder(prediction).summary}")
        return summary
    results = Path(cfg.paths.results) / raw_folder.name
    count = fold_count(Path(cfg.paths.preprocessed) / raw_folder.name)
    result = select_best(results, reference, labels, dataset_json.file_ending, dataset_json.ignore_label,
                         bool(cfg.ensembles), float(cfg.tolerance_mm), int(cfg.num_workers), count,
                         _folds(cfg.get("folds"), count), _names(cfg.get("models")), metrics,
                         dataset_json.instance_maps, selection_metric, match_iou)
    print("\n" + results_table(result))
    folder = DatasetResults(results)
    print(f"Best: {result['selected']['name']} -> {folder.best_configuration}\n  plot: {folder.cv_plot}\n"
          f"  use it: nnlight-predict model=best dataset={raw_folder.name} input=<images> output=<folder>")
    return result
