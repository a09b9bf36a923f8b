"""A lab's own per-case score: the relative volume error of a structure (in mm³, so spacing matters)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnlight.evaluation.metrics import CaseMetric


class VolumeError(CaseMetric):
    """|V_pred - V_ref| / V_ref; NaN when the structure is absent from the reference."""

    higher_is_better = False

    def __call__(self, reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> float:
        voxel = float(np.prod(spacing))
        reference_volume = reference.sum() * voxel
        if reference_volume == 0:
            return float("nan")
        return float(abs(prediction.sum() * voxel - reference_volume) / reference_volume)
