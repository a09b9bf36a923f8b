"""Post-processing rules (chosen on cross-validation by :mod:`nnlight.evaluation.postprocessing_search`) and their
application to a prediction: keep the largest connected component of all foreground and/or of single labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import label as connected_components

from nnlight.raw.labels import LabelValue, label_key
from nnlight.utils.files import atomic_write_json, load_json


@dataclass(frozen=True)
class PostprocessingRules:
    keep_largest_foreground: bool = False
    keep_largest_per_label: list[LabelValue] = field(default_factory=list)  # labels or regions (tuples)

    def to_json(self) -> dict[str, Any]:
        return {"keep_largest_foreground": self.keep_largest_foreground,
                "keep_largest_per_label": [list(v) if isinstance(v, tuple) else v for v in self.keep_largest_per_label]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PostprocessingRules:
        return cls(bool(data["keep_largest_foreground"]),
                   [tuple(v) if isinstance(v, list) else int(v) for v in data["keep_largest_per_label"]])

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> PostprocessingRules:
        return cls.from_json(load_json(path))


def keep_largest_component(segmentation: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Set every voxel of ``values`` outside the largest connected component (face connectivity) to background."""
    mask = np.isin(segmentation, values)
    components, count = connected_components(mask)
    if count <= 1:
        return segmentation
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    result = segmentation.copy()
    result[mask & (components != sizes.argmax())] = 0
    return result


def apply_postprocessing(segmentation: np.ndarray, rules: PostprocessingRules,
                         foreground_values: Sequence[int]) -> np.ndarray:
    if rules.keep_largest_foreground:
        segmentation = keep_largest_component(segmentation, foreground_values)
    for value in rules.keep_largest_per_label:
        segmentation = keep_largest_component(segmentation, [value] if isinstance(value, int) else list(value))
    return segmentation


def rules_as_text(rules: PostprocessingRules) -> str:
    parts = (["keep the largest foreground component"] if rules.keep_largest_foreground else []) + \
        [f"keep the largest component of label {label_key(v)}" for v in rules.keep_largest_per_label]
    return "; ".join(parts) or "none"
