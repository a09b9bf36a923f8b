"""Dice and IoU per label with nnU-Net's definitions (``evaluation/evaluate_predictions.py``), and a user's own.

Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN); both NaN when the label is absent from reference
and prediction. ``mean`` is the NaN-ignoring mean over cases; ``foreground_mean`` the mean over labels.
A user's per-case metric (the ``metrics`` group: name -> a :class:`CaseMetric` class) is scored beside them
and averaged the same way, so it reaches ``summary.json``, ``cv_results`` and the benchmark report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

from nnlight.evaluation.object_metrics import INSTANCE_COUNTS, INSTANCE_SCORES
from nnlight.raw.labels import label_key
from nnlight.utils.components import Component, components
from nnlight.utils.errors import UserError

SEMANTIC_SCORES = ("Dice", "IoU", "HD95", "NSD")
SCORES = (*SEMANTIC_SCORES, *INSTANCE_SCORES)  # averaged over cases, NaN-ignoring
COUNTS = ("TP", "FP", "FN", "n_ref", "n_pred", *INSTANCE_COUNTS)  # averaged over cases as counts


class CaseMetric(ABC):
    """A user's score of one label (or region) in one case, e.g. a Hausdorff percentile or a volume error.

    Called with two boolean masks on the reference's grid (ignored voxels removed from both) and the voxel
    spacing in mm; returns a float (NaN where it is undefined, e.g. both masks empty: left out of the means).
    ``higher_is_better`` says how to read it in tables.
    """

    higher_is_better: bool = True

    @abstractmethod
    def __call__(self, reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> float:
        """The score of ``prediction`` against ``reference``."""


def metric_components(node: Mapping[str, Any] | None, where: str = "metrics") -> tuple[Component, ...]:
    """The ``metrics`` group's classes, checked (CaseMetric subclasses with known arguments, names not taken)."""
    found = tuple(components(node, where, CaseMetric))
    for metric in found:
        name = metric.where.removeprefix(f"{where}.")
        if name in (*SCORES, *COUNTS):
            raise UserError(f"{metric.where}: {name} is a built-in score's name; choose another")
        metric.create()  # a wrong argument value is named now
    return found


def metric_name(metric: Component) -> str:
    return metric.where.rpartition(".")[2]


def label_metrics(reference: np.ndarray, prediction: np.ndarray, label: int | Sequence[int],
                  ignore_mask: np.ndarray | None = None) -> dict[str, float]:
    values = [label] if isinstance(label, int) else list(label)
    ref, pred = np.isin(reference, values), np.isin(prediction, values)
    if ignore_mask is not None:
        ref, pred = ref & ~ignore_mask, pred & ~ignore_mask
    tp = int((ref & pred).sum())
    fp = int((~ref & pred).sum())
    fn = int((ref & ~pred).sum())
    denominator = tp + fp + fn
    return {"Dice": 2 * tp / (2 * tp + fp + fn) if denominator else float("nan"),
            "IoU": tp / denominator if denominator else float("nan"),
            "TP": tp, "FP": fp, "FN": fn, "n_ref": int(ref.sum()), "n_pred": int(pred.sum())}


def case_metrics(reference: np.ndarray, prediction: np.ndarray, labels: Mapping[str, int | Sequence[int]],
                 ignore_label: int | None = None, spacing: Sequence[float] | None = None,
                 tolerance_mm: float = 1.0, extra: Mapping[str, CaseMetric] | None = None,
                 extra_spacing: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Metrics for every foreground label (or region) of one case, keyed by the label's value.

    With ``spacing`` (mm per axis of the arrays) also HD95 and normalized surface Dice; ``extra``: the user's
    metrics by name (called with ``extra_spacing``, default ``spacing`` or 1 mm).
    """
    ignore = reference == ignore_label if ignore_label is not None else None
    result = {}
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        metrics = label_metrics(reference, prediction, value, ignore)
        if spacing is not None or extra:
            values = [value] if isinstance(value, int) else list(value)
            ref, pred = np.isin(reference, values), np.isin(prediction, values)
            if ignore is not None:
                ref, pred = ref & ~ignore, pred & ~ignore
            if spacing is not None:
                metrics |= surface_metrics(ref, pred, spacing, tolerance_mm)
            own_spacing = extra_spacing or spacing or [1.0] * reference.ndim
            for metric, score in (extra or {}).items():
                metrics[metric] = float(score(ref, pred, own_spacing))
        result[label_key(value)] = metrics
    return result


def score_names(summary_mean: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The scores a summary holds: the built-ins first, then a user's, in their order."""
    found = [m for label in summary_mean.values() for m in label if m not in COUNTS]
    return [m for m in SCORES if m in found] + list(dict.fromkeys(m for m in found if m not in SCORES))


def summarize(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """``{"metric_per_case", "mean", "foreground_mean"}`` as nnU-Net's summary.json."""
    labels = sorted({label for case in per_case.values() for label in case}, key=lambda k: (len(k), k))
    names = list(dict.fromkeys(m for case in per_case.values() for label in case.values() for m in label
                               if m not in COUNTS))
    names = [m for m in SCORES if m in names] + [m for m in names if m not in SCORES]
    mean = {}
    for label in labels:
        present = [m for m in names if all(m in case[label] for case in per_case.values())]
        mean[label] = {metric: float(np.nanmean([case[label][metric] for case in per_case.values()]))
                       if any(not np.isnan(case[label][metric]) for case in per_case.values()) else float("nan")
                       for metric in present}
        for count in COUNTS:
            if all(count in case[label] for case in per_case.values()):
                mean[label][count] = float(np.mean([case[label][count] for case in per_case.values()]))
    foreground = {metric: float(np.nanmean([mean[label][metric] for label in labels]))
                  if labels and any(not np.isnan(mean[label].get(metric, np.nan)) for label in labels) else float("nan")
                  for metric in names if all(metric in mean[label] for label in labels)}
    return {"metric_per_case": [{"case": case, "metrics": metrics} for case, metrics in per_case.items()],
            "mean": mean, "foreground_mean": foreground}


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a background face neighbour (the image border counts as background)."""
    return mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)


def surface_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                    tolerance_mm: float = 1.0) -> dict[str, float]:
    """95th-percentile Hausdorff distance (mm) and normalized surface Dice at ``tolerance_mm`` for two masks.

    HD95 is the larger of the two directed 95th percentiles of surface-to-surface distances; the normalized
    surface Dice (Nikolov et al. 2021) is the fraction of both surfaces within the tolerance of the other.
    Both NaN when both masks are empty; when only one is, NSD is 0 and HD95 is the image diagonal (the worst
    possible distance), so a missed structure is penalized instead of silently dropped from the mean.
    """
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    if not reference.any() and not prediction.any():
        return {"HD95": float("nan"), "NSD": float("nan")}
    if not reference.any() or not prediction.any():
        return {"HD95": float(np.linalg.norm(np.asarray(reference.shape) * spacing_mm)), "NSD": 0.0}
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(reference | prediction))
    ref_surface, pred_surface = _surface(reference[box]), _surface(prediction[box])
    to_ref = distance_transform_edt(~ref_surface, sampling=spacing_mm)[pred_surface]
    to_pred = distance_transform_edt(~pred_surface, sampling=spacing_mm)[ref_surface]
    hd95 = max(float(np.percentile(to_ref, 95)), float(np.percentile(to_pred, 95)))
    nsd = float(((to_ref <= tolerance_mm).sum() + (to_pred <= tolerance_mm).sum()) / (len(to_ref) + len(to_pred)))
    return {"HD95": hd95, "NSD": nsd}
