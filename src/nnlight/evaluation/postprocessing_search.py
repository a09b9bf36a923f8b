"""Post-processing chosen on cross-validation as nnU-Net does (``postprocessing/remove_connected_components.py``).

Step 1: keep only the largest connected component of all foreground together; accepted if the foreground
mean Dice improves and no label gets worse. Step 2 (on top of step 1's outcome): per label or region, keep
its largest component; accepted for each label whose Dice improves. The rules are a small JSON saved with
the model and applied by ``predict.py`` (:mod:`nnlight.inference.postprocessing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nnlight.evaluation.metrics import case_metrics, summarize
from nnlight.inference.postprocessing import (
    PostprocessingRules,
    apply_postprocessing,
    keep_largest_component,
    rules_as_text,
)
from nnlight.raw.labels import LabelLayout, LabelValue, label_key

__all__ = ["PostprocessingRules", "apply_postprocessing", "determine_postprocessing", "rules_as_text"]


def _summary(predictions: Mapping[str, np.ndarray], references: Mapping[str, np.ndarray],
             labels: Mapping[str, LabelValue], ignore_label: int | None) -> dict[str, Any]:
    return summarize({c: case_metrics(references[c], predictions[c], labels, ignore_label) for c in predictions})


def determine_postprocessing(predictions: Mapping[str, np.ndarray], references: Mapping[str, np.ndarray],
                             labels: Mapping[str, LabelValue], ignore_label: int | None = None
                             ) -> tuple[PostprocessingRules, dict[str, Any], dict[str, Any]]:
    """The rules, the summary without and the summary with them (cross-validation predictions vs references)."""
    foreground = LabelLayout.from_mapping(labels).foreground_values
    baseline = _summary(predictions, references, labels, ignore_label)
    keep_foreground = False
    current, current_summary = dict(predictions), baseline
    if len(foreground) > 0:
        candidate = {c: keep_largest_component(p, foreground) for c, p in predictions.items()}
        candidate_summary = _summary(candidate, references, labels, ignore_label)
        improves = candidate_summary["foreground_mean"]["Dice"] > baseline["foreground_mean"]["Dice"]
        none_worse = all(candidate_summary["mean"][k]["Dice"] >= baseline["mean"][k]["Dice"]
                         for k in baseline["mean"] if not np.isnan(baseline["mean"][k]["Dice"]))
        if improves and none_worse:
            keep_foreground, current, current_summary = True, candidate, candidate_summary
    per_label = []
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        values = [value] if isinstance(value, int) else list(value)
        candidate = {c: keep_largest_component(p, values) for c, p in current.items()}
        key = label_key(value)
        if _summary(candidate, references, labels, ignore_label)["mean"][key]["Dice"] > \
                current_summary["mean"][key]["Dice"]:
            per_label.append(value)
    rules = PostprocessingRules(keep_foreground, per_label)
    final = {c: apply_postprocessing(p, PostprocessingRules(False, per_label), foreground) for c, p in current.items()}
    return rules, baseline, _summary(final, references, labels, ignore_label)
