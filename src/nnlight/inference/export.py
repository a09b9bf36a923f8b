"""From network output in the preprocessed space back to a segmentation on the input's exact grid.

Reverses preprocessing in reverse order: resample (linear, separate-z rule) → argmax (or region order) →
un-crop → un-transpose, then writes with the input's spacing, origin and direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlight.preprocessing.resampling import resample_logits
from nnlight.raw.io import Geometry, write_seg


def logits_to_segmentation(logits: torch.Tensor, regions_class_order: Sequence[int] | None = None) -> torch.Tensor:
    """Argmax over classes; for region-based models each region above 0.5 paints its label, in order."""
    if regions_class_order is None:
        return logits.argmax(0).to(torch.int16)
    segmentation = torch.zeros(logits.shape[1:], dtype=torch.int16, device=logits.device)
    for region, label in zip(logits.sigmoid() > 0.5, regions_class_order, strict=True):
        segmentation[region] = label
    return segmentation


def segmentation_in_original_space(logits: torch.Tensor, properties: Mapping[str, Any],
                                   transpose_backward: Sequence[int],
                                   regions_class_order: Sequence[int] | None = None) -> np.ndarray:
    """``(z, y, x)`` labels on the grid the case was read with (before transpose and crop)."""
    logits = resample_logits(logits, properties["shape_after_cropping_and_before_resampling"],
                             properties["target_spacing"], properties["spacing"])
    cropped = logits_to_segmentation(logits, regions_class_order).cpu().numpy()
    full = np.zeros(properties["shape_before_cropping"], np.int16)
    full[tuple(slice(a, b) for a, b in properties["bbox_used_for_cropping"])] = cropped
    return full.transpose(list(transpose_backward))


def geometry_from_properties(properties: Mapping[str, Any]) -> Geometry:
    return Geometry(tuple(properties["original_spacing"]), tuple(properties["sitk_spacing"]),
                    tuple(properties["sitk_origin"]), tuple(properties["sitk_direction"]), properties["is_2d"])


def write_segmentation(segmentation: np.ndarray, path: Path, properties: Mapping[str, Any]) -> None:
    """Write atomically (a temp name with the same ending, then rename) with the case's geometry."""
    tmp = path.with_name(f".{path.name}.tmp{''.join(path.suffixes)}")
    write_seg(segmentation, tmp, geometry_from_properties(properties))
    tmp.replace(path)
