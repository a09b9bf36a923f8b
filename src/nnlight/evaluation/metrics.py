"""Dice and IoU per label with nnU-Net's definitions (``evaluation/evaluate_predictions.py``).

Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN); both NaN when the label is absent from reference
and prediction. ``mean`` is the NaN-ignoring mean over cases; ``foreground_mean`` the mean over labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


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
                 ignore_label: int | None = None) -> dict[str, dict[str, float]]:
    """Metrics for every foreground label (or region) of one case, keyed by the label's value."""
    ignore = reference == ignore_label if ignore_label is not None else None
    return {str(value): label_metrics(reference, prediction, value, ignore) for name, value in labels.items()
            if name not in ("background", "ignore")}


def summarize(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """``{"metric_per_case", "mean", "foreground_mean"}`` as nnU-Net's summary.json."""
    labels = sorted({label for case in per_case.values() for label in case}, key=lambda k: (len(k), k))
    mean = {}
    for label in labels:
        mean[label] = {metric: float(np.nanmean([case[label][metric] for case in per_case.values()]))
                       if any(not np.isnan(case[label][metric]) for case in per_case.values()) else float("nan")
                       for metric in ("Dice", "IoU")}
        for count in ("TP", "FP", "FN", "n_ref", "n_pred"):
            mean[label][count] = float(np.mean([case[label][count] for case in per_case.values()]))
    foreground = {metric: float(np.nanmean([mean[label][metric] for label in labels])) if labels else float("nan")
                  for metric in ("Dice", "IoU")}
    return {"metric_per_case": [{"case": case, "metrics": metrics} for case, metrics in per_case.items()],
            "mean": mean, "foreground_mean": foreground}
