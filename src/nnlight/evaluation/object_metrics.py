"""Object-level scores of an instance map against a reference instance map (every object its own id).

- Matching: a reference and a predicted object match when their IoU reaches the threshold (one-to-one, the
  highest IoU first; above 0.5 the match is unique anyway). ``obj_TP`` / ``obj_FP`` / ``obj_FN`` count objects.
- ``F1`` = 2TP / (2TP + FP + FN) at the matching threshold; ``AP50``, ``AP75``, ``AP90`` = TP / (TP + FP + FN) at
  IoU 0.5 / 0.75 / 0.9 (the "average precision" of the Data Science Bowl 2018 and of cell benchmarks).
- ``PQ``: panoptic quality, the summed IoU of the matches / (TP + FP/2 + FN/2).
- ``SEG``: the Cell Tracking Challenge's measure, the mean over reference objects of the IoU with the predicted
  object that covers more than half of it (0 when none does).
- ``ARE`` and ``VI``: the adapted Rand error (1 - the Rand F-score) and the variation of information (split +
  merge conditional entropies, in nats) over the voxels of reference objects, as the ISBI 2012 EM challenge scored
  membrane segmentations (scikit-image's definitions with the reference background ignored). Lower is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnlight.raw.instances import compact_ids
from nnlight.utils.errors import UserError

INSTANCE_SCORES = ("F1", "AP50", "AP75", "AP90", "PQ", "SEG", "ARE", "VI")
INSTANCE_COUNTS = ("obj_TP", "obj_FP", "obj_FN", "n_ref_objects", "n_pred_objects")
LOWER_IS_BETTER = ("HD95", "ARE", "VI")


def match_threshold(value: float, key: str) -> float:
    """The IoU at which objects match, checked: 0 would match every overlap, above 1 nothing."""
    if not 0 < value <= 1:
        raise UserError(f"{key}={value}: the IoU at which objects match must lie in (0, 1], e.g. 0.5")
    return value


@dataclass(frozen=True)
class Overlaps:
    """The non-zero entries of the contingency table of two instance maps."""

    reference: np.ndarray  # reference id per entry
    prediction: np.ndarray  # predicted id per entry
    voxels: np.ndarray  # voxels both share
    reference_sizes: np.ndarray  # voxels per reference id (index = id)
    prediction_sizes: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        union = self.reference_sizes[self.reference] + self.prediction_sizes[self.prediction] - self.voxels
        return self.voxels / union


def overlaps(reference: np.ndarray, prediction: np.ndarray) -> Overlaps:
    ref, pred = reference.ravel().astype(np.int64), prediction.ravel().astype(np.int64)
    both = (ref > 0) & (pred > 0)
    width = int(pred.max(initial=0)) + 1
    keys, voxels = np.unique(ref[both] * width + pred[both], return_counts=True)
    return Overlaps(keys // width, keys % width, voxels, np.bincount(ref), np.bincount(pred, minlength=width))


def matched_iou(found: Overlaps, threshold: float) -> np.ndarray:
    """The IoU of each one-to-one match at ``threshold`` (highest IoU first)."""
    iou = found.iou
    candidates = np.flatnonzero(iou >= threshold)
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    matched = []
    for i in candidates[np.argsort(-iou[candidates], kind="stable")]:
        r, p = int(found.reference[i]), int(found.prediction[i])
        if r not in used_ref and p not in used_pred:
            used_ref.add(r)
            used_pred.add(p)
            matched.append(iou[i])
    return np.asarray(matched, np.float64)


def _entropy_terms(counts: np.ndarray, total: float) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def rand_error_and_vi(reference: np.ndarray, prediction: np.ndarray) -> tuple[float, float]:
    """Adapted Rand error and variation of information over the reference objects' voxels (NaN without any)."""
    ref, pred = reference.ravel().astype(np.int64), prediction.ravel().astype(np.int64)
    inside = ref > 0
    n = int(inside.sum())
    if n == 0:
        return float("nan"), float("nan")
    ref, pred = ref[inside], pred[inside]
    width = int(pred.max(initial=0)) + 1
    _, joint = np.unique(ref * width + pred, return_counts=True)
    rows, columns = np.bincount(ref), np.bincount(pred)
    rows, columns = rows[rows > 0].astype(np.float64), columns[columns > 0].astype(np.float64)
    joint = joint.astype(np.float64)
    sum_joint, sum_rows, sum_columns = (joint ** 2).sum() - n, (rows ** 2).sum() - n, (columns ** 2).sum() - n
    precision = sum_joint / sum_columns if sum_columns else 1.0
    recall = sum_joint / sum_rows if sum_rows else 1.0
    are = 1.0 - (2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    h_joint = _entropy_terms(joint, n)
    vi = (h_joint - _entropy_terms(columns, n)) + (h_joint - _entropy_terms(rows, n))
    return float(are), float(max(vi, 0.0))


def instance_metrics(reference: np.ndarray, prediction: np.ndarray, match_threshold: float = 0.5,
                     ap_thresholds: Sequence[float] = (0.5, 0.75, 0.9)) -> dict[str, float]:
    """Every object-level score of one case (see the module's docstring); NaN where undefined (no objects)."""
    reference, prediction = compact_ids(reference), compact_ids(prediction)  # memory follows the object count
    found = overlaps(reference, prediction)
    n_ref = int(np.count_nonzero(found.reference_sizes[1:]))
    n_pred = int(np.count_nonzero(found.prediction_sizes[1:]))
    scores: dict[str, float] = {}
    matches = matched_iou(found, match_threshold)
    tp = len(matches)
    fp, fn = n_pred - tp, n_ref - tp
    scores["F1"] = 2 * tp / (2 * tp + fp + fn) if n_ref + n_pred else float("nan")
    for threshold in ap_thresholds:
        hits = len(matched_iou(found, threshold))
        scores[f"AP{round(threshold * 100)}"] = hits / (n_ref + n_pred - hits) if n_ref + n_pred else float("nan")
    scores["PQ"] = float(matches.sum() / (tp + fp / 2 + fn / 2)) if n_ref + n_pred else float("nan")
    covering = found.voxels > 0.5 * found.reference_sizes[found.reference]
    scores["SEG"] = float(found.iou[covering].sum() / n_ref) if n_ref else float("nan")
    scores["ARE"], scores["VI"] = rand_error_and_vi(reference, prediction)
    scores |= {"obj_TP": tp, "obj_FP": fp, "obj_FN": fn, "n_ref_objects": n_ref, "n_pred_objects": n_pred}
    return scores
