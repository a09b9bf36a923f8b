"""Stage `evaluate`: score a prediction folder, or compare every trained model of a dataset on cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nnlight.data.splits import fold_count
from nnlight.evaluation.folder_evaluation import EvaluationSettings, evaluate_folder
from nnlight.evaluation.metrics import SEMANTIC_SCORES, metric_components, metric_name
from nnlight.evaluation.object_metrics import INSTANCE_SCORES, match_threshold
from nnlight.evaluation.selection import load_best, results_table, select_best
from nnlight.inference.predictor import recorded_networks
from nnlight.model.network import trust_setting
from nnlight.pipeline.config_values import Roots, check_required, resolved_config, typed
from nnlight.pipeline.plan import resolve_raw_folder
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.utils.components import Component
from nnlight.utils.errors import UserError
from nnlight.utils.folders import DatasetResults, PredictionFolder
from nnlight.utils.names import model_name


@dataclass(frozen=True)
class EvaluateOptions:
    """evaluate.yaml's own values."""

    dataset: str | int
    prediction: str | None = None
    reference: str | None = None
    allow_missing: bool = False
    folds: int | str | list[int | str] | None = None
    models: str | list[str] | None = None
    name: str | None = None
    ensembles: bool = True
    surface_metrics: bool = True
    tolerance_mm: float = 1.0
    selection_metric: str = "Dice"
    match_iou: float = 0.5
    num_workers: int = 2
    verbose: bool = False


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything nnlight-evaluate reads from its config, typed and checked once."""

    options: EvaluateOptions
    metrics: tuple[Component, ...]  # the user's per-case scores (CaseMetric classes)
    roots: Roots
    raw_folder: Path  # the dataset's raw folder (labels and file ending)

    @property
    def log_file(self) -> Path:
        """Beside what it writes: the scored folder's ``evaluate.log``, or the dataset's results'."""
        if self.options.prediction:
            return Path(self.options.prediction) / "evaluate.log"
        return self.roots.results / self.raw_folder.name / "evaluate.log"


def parse(cfg: DictConfig) -> EvaluateConfig:
    values = resolved_config(cfg)
    check_required(values, {"dataset": "nnlight-evaluate dataset=Dataset104_DRIVE"})
    roots = Roots.from_values(values.pop("paths"))
    metrics = metric_components(values.pop("metrics", None) or {})
    options = typed(EvaluateOptions, values)
    match_threshold(options.match_iou, "match_iou")
    return EvaluateConfig(options, metrics, roots, resolve_raw_folder(str(options.dataset), roots.raw))


def _folds(value: int | str | list[int | str] | None, count: int) -> list[str] | None:
    """``folds=0`` or ``folds=[0,1]``: the folds to compare on (null: all of the dataset's splits)."""
    if value is None:
        return None
    folds = [str(f) for f in (value if isinstance(value, list) else [value])]
    wrong = [f for f in folds if not f.isdigit() or int(f) >= count]
    if wrong or not folds:
        raise UserError(f"folds={folds}: choose folds among 0..{count - 1} (e.g. folds=[0,1]), or null for all")
    return sorted(set(folds), key=int)


def _names(value: str | list[str] | None) -> list[str] | None:
    """``models=[3d_fullres/baseline, ...]``: the candidates by name (null: every complete, non-trial model)."""
    if value is None:
        return None
    names = [str(m) for m in (value if isinstance(value, list) else [value])]
    return [model_name(m, "models") for m in names]


def _selection_metric(name: str, instances: bool, metrics: Sequence[Component]) -> str:
    """The score model selection maximizes (minimizes for distances and errors), checked before anything runs."""
    valid = [*SEMANTIC_SCORES, *(INSTANCE_SCORES if instances else ()), *(metric_name(m) for m in metrics)]
    if name not in valid:
        hint = "" if instances or name not in INSTANCE_SCORES else \
            " (object scores need an instance dataset: \"instance_maps\": true in dataset.json)"
        raise UserError(f"selection_metric={name}: not scored for this dataset{hint}; choose one of {', '.join(valid)}")
    return name


def run(config: EvaluateConfig) -> dict[str, Any]:
    options, raw_folder = config.options, config.raw_folder
    if not (raw_folder / "dataset.json").is_file():
        raise UserError(f"{raw_folder / 'dataset.json'}: not found; evaluation reads the labels and file ending "
                        "from the raw dataset (set paths.raw or NNLIGHT_RAW)")
    dataset_json = load_dataset_json(raw_folder / "dataset.json")
    reference = Path(options.reference) if options.reference else raw_folder / "labelsTr"
    if not reference.is_dir():
        raise UserError(f"reference={reference}: folder not found")
    labels = dict(dataset_json.labels)
    metrics = config.metrics
    selection_metric = _selection_metric(options.selection_metric, dataset_json.instance_maps, metrics)
    if options.prediction:
        prediction = Path(options.prediction)
        if not prediction.is_dir():
            raise UserError(f"prediction={prediction}: folder not found")
        summary = evaluate_folder(prediction, reference, EvaluationSettings(
            labels, dataset_json.file_ending, dataset_json.ignore_label, options.surface_metrics,
            options.tolerance_mm, metrics, dataset_json.instance_maps, options.match_iou),
            num_workers=options.num_workers, allow_missing=options.allow_missing)
        skipped = summary["references_without_prediction"]
        print(f"\nScored {summary['cases']} case(s)" + (f" ({skipped} reference case(s) without a prediction were "
                                                       "left out: allow_missing=true)" if skipped else "")
              + "\nForeground mean: " + ", ".join(f"{k} {v:.4f}" for k, v in summary["foreground_mean"].items())
              + f"\n  per case and label: {PredictionFolder(prediction).summary_csv}; all: "
              f"{PredictionFolder(prediction).summary}")
        return summary
    results = config.roots.results / raw_folder.name
    count = fold_count(config.roots.preprocessed / raw_folder.name)
    result = select_best(results, reference, labels, dataset_json.file_ending, dataset_json.ignore_label,
                         options.ensembles, options.tolerance_mm, options.num_workers, count,
                         _folds(options.folds, count), _names(options.models), metrics,
                         dataset_json.instance_maps, selection_metric, options.match_iou,
                         None if options.name is None else str(options.name))
    print("\n" + results_table(result))
    comparison = DatasetResults(results).comparison(result["comparison"])
    trust = trust_setting(recorded_networks(model for model, _ in load_best(results, comparison.name).members))
    print(f"Best: {result['selected']['name']} -> {comparison.best_configuration}\n  table: {comparison.cv_table} "
          f"(and .csv)\n  plot: {comparison.cv_plot}\n"
          f"  use it: nnlight-predict model=best dataset={raw_folder.name} input=<images> output=<folder>{trust}"
          f"   (the latest comparison; best={comparison.name} picks this one later)")
    return result
