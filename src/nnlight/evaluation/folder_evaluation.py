"""Score a folder of predictions against a folder of reference labels: ``summary.json`` and ``summary.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nnlight.evaluation.metrics import COUNTS, case_metrics, metric_name, score_names, summarize
from nnlight.evaluation.object_metrics import INSTANCE_COUNTS, instance_metrics
from nnlight.raw.io import geometries_match, image_format, read_seg
from nnlight.utils.components import Component
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, atomic_write_text
from nnlight.utils.folders import PredictionFolder
from nnlight.utils.parallel import map_with_progress


@dataclass(frozen=True)
class EvaluationSettings:
    labels: Mapping[str, int | Sequence[int]]  # dataset.json's labels (regions as lists)
    file_ending: str
    ignore_label: int | None = None
    surface_metrics: bool = True  # HD95 and normalized surface Dice (slower than Dice)
    tolerance_mm: float = 1.0  # normalized surface Dice tolerance
    metrics: tuple[Component, ...] = ()  # a user's CaseMetric classes (the metrics group), scored beside the others
    instances: bool = False  # instance maps: the objects are matched and scored too (evaluation.object_metrics)
    match_iou: float = 0.5  # instance maps: the IoU at which a predicted object matches a reference object


def _score_case(pair: tuple[str, Path, Path], settings: EvaluationSettings) -> tuple[str, dict[str, Any]]:
    case_id, prediction_file, reference_file = pair
    file_format = image_format(settings.file_ending)
    prediction, prediction_geometry = read_seg(prediction_file, file_format)
    reference, reference_geometry = read_seg(reference_file, file_format)
    if prediction.shape != reference.shape or not geometries_match(prediction_geometry, reference_geometry):
        raise UserError(f"{prediction_file}: shape {prediction.shape[1:]} / spacing {prediction_geometry.spacing} "
                        f"differs from the reference {reference_file} ({reference.shape[1:]} / "
                        f"{reference_geometry.spacing}); predictions must be on the reference's grid")
    return case_id, score_case(reference[0], prediction[0], reference_geometry.spacing, settings)


def score_case(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
               settings: EvaluationSettings) -> dict[str, dict[str, float]]:
    """Every label's metrics for one case on the reference's 3D grid (a 2D image has one dummy slice)."""
    if reference.shape[0] == 1:  # a 2D image: surfaces are contours in the plane, not the dummy slice's faces
        reference, prediction, spacing = reference[0], prediction[0], spacing[1:]
    extra = {metric_name(m): m.create() for m in settings.metrics}
    if not settings.instances:
        return case_metrics(reference, prediction, settings.labels, settings.ignore_label,
                            spacing if settings.surface_metrics else None, settings.tolerance_mm, extra, spacing)
    objects = instance_metrics(reference, prediction, settings.match_iou)
    scores = case_metrics((reference > 0).astype(np.uint8), (prediction > 0).astype(np.uint8), settings.labels,
                          None, spacing if settings.surface_metrics else None, settings.tolerance_mm, extra, spacing)
    return {label: {**values, **objects} for label, values in scores.items()}


def evaluate_folder(prediction_folder: Path, reference_folder: Path, settings: EvaluationSettings,
                    output: Path | None = None, num_workers: int = 2, allow_missing: bool = False) -> dict[str, Any]:
    """Score every prediction against its reference; write ``summary.json`` + ``summary.csv`` (default: beside
    them). A reference without a prediction is an error unless ``allow_missing``; the summary counts both."""
    ending = settings.file_ending
    predictions = {p.name[:-len(ending)]: p for p in sorted(prediction_folder.glob(f"*{ending}"))
                   if not p.name.startswith(".")}
    if not predictions:
        raise UserError(f"{prediction_folder}: no predictions ending in {ending}")
    missing = [c for c in predictions if not (reference_folder / f"{c}{ending}").is_file()]
    if missing:
        raise UserError(f"{reference_folder}: no reference for {len(missing)} prediction(s), e.g. "
                        f"{missing[0]}{ending}; point reference= at the folder with the matching label files")
    unpredicted = sorted(p.name[:-len(ending)] for p in reference_folder.glob(f"*{ending}")
                         if not p.name.startswith(".") and p.name[:-len(ending)] not in predictions)
    if unpredicted and not allow_missing:
        raise UserError(f"{prediction_folder}: {len(unpredicted)} of the {len(unpredicted) + len(predictions)} "
                        f"reference cases in {reference_folder} have no prediction (e.g. {unpredicted[0]}{ending}); "
                        "predict them, or pass allow_missing=true to score only the predicted ones")
    pairs = [(c, p, reference_folder / f"{c}{ending}") for c, p in predictions.items()]
    per_case = dict(map_with_progress(partial(_score_case, settings=settings), pairs, num_workers, "Evaluating"))
    summary = {**summarize({c: per_case[c] for c in predictions}), "cases": len(predictions),
               "references_without_prediction": len(unpredicted)}
    output = output or prediction_folder
    atomic_write_json(PredictionFolder(output).summary, summary)
    atomic_write_text(PredictionFolder(output).summary_csv, summary_csv(summary))
    return summary


def summary_csv(summary: Mapping[str, Any]) -> str:
    """One row per case and label, then the mean rows: opens in any spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    counts = [c for c in (*COUNTS[:3], *INSTANCE_COUNTS[:3]) if any(c in v for v in summary["mean"].values())]
    columns = [*score_names(summary["mean"]), *counts]
    writer.writerow(["case", "label", *columns])
    for entry in summary["metric_per_case"]:
        for label, metrics in entry["metrics"].items():
            writer.writerow([entry["case"], label, *[metrics.get(c, "") for c in columns]])
    for label, metrics in summary["mean"].items():
        writer.writerow(["mean", label, *[metrics.get(c, "") for c in columns]])
    writer.writerow(["foreground_mean", "", *[summary["foreground_mean"].get(c, "") for c in columns]])
    return buffer.getvalue()
