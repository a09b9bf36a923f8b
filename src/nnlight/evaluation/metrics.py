"""Dice and IoU per label with nnU-Net's definitions (``evaluation/evaluate_predictions.py``).

Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN); both NaN when the label is absent from reference
and prediction. ``mean`` is the NaN-ignoring mean over cases; ``foreground_mean`` the mean over labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

from nnlight.raw.labels import label_key

SCORES = ("Dice", "IoU", "HD95", "NSD")  # averaged over cases; TP/FP/FN/n_ref/n_pred are averaged as counts


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
                 tolerance_mm: float = 1.0) -> dict[str, dict[str, float]]:
    """Metrics for every foreground label (or region) of one case, keyed by the label's value.

    With ``spacing`` (mm per axis of the arrays) also HD95 and normalized surface Dice.
    """
    ignore = reference == ignore_label if ignore_label is not None else None
    result = {}
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        metrics = label_metrics(reference, prediction, value, ignore)
        if spacing is not None:
            values = [value] if isinstance(value, int) else list(value)
            ref, pred = np.isin(reference, values), np.isin(prediction, values)
            if ignore is not None:
                ref, pred = ref & ~ignore, pred & ~ignore
            metrics |= surface_metrics(ref, pred, spacing, tolerance_mm)
        result[label_key(value)] = metrics
    return result


def summarize(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """``{"metric_per_case", "mean", "foreground_mean"}`` as nnU-Net's summary.json."""
    labels = sorted({label for case in per_case.values() for label in case}, key=lambda k: (len(k), k))
    mean = {}
    for label in labels:
        present = [m for m in SCORES if all(m in case[label] for case in per_case.values())]
        mean[label] = {metric: float(np.nanmean([case[label][metric] for case in per_case.values()]))
                       if any(not np.isnan(case[label][metric]) for case in per_case.values()) else float("nan")
                       for metric in present}
        for count in ("TP", "FP", "FN", "n_ref", "n_pred"):
            mean[label][count] = float(np.mean([case[label][count] for case in per_case.values()]))
    foreground = {metric: float(np.nanmean([mean[label][metric] for label in labels]))
                  if labels and any(not np.isnan(mean[label].get(metric, np.nan)) for label in labels) else float("nan")
                  for metric in SCORES if all(metric in mean[label] for label in labels)}
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
    spacing = np.asarray(spacing, dtype=np.float64)
    if not reference.any() and not prediction.any():
        return {"HD95": float("nan"), "NSD": float("nan")}
    if not reference.any() or not prediction.any():
        return {"HD95": float(np.linalg.norm(np.asarray(reference.shape) * spacing)), "NSD": 0.0}
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(reference | prediction))
    ref_surface, pred_surface = _surface(reference[box]), _surface(prediction[box])
    to_ref = distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    to_pred = distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    hd95 = max(float(np.percentile(to_ref, 95)), float(np.percentile(to_pred, 95)))
    nsd = float(((to_ref <= tolerance_mm).sum() + (to_pred <= tolerance_mm).sum()) / (len(to_ref) + len(to_pred)))
    return {"HD95": hd95, "NSD": nsd}
