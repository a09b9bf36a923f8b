"""From network output in the preprocessed space back to a segmentation on the input's exact grid.

Reverses preprocessing in reverse order: resample (linear, separate-z rule) → argmax (or region order) →
un-crop → un-transpose, then writes with the input's spacing, origin and direction.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from nnlight.preprocessing.resampling import resample_logits
from nnlight.raw.instances import InstancePlan, instances_from_border_core
from nnlight.raw.io import Geometry, verify_image_file, write_seg
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write, atomic_write_named

EXPORT_CLASS_CHUNK = 4  # classes resampled to the input grid at once (memory: this many float32 volumes)


def scores_to_segmentation(scores: torch.Tensor, regions_class_order: Sequence[int] | None = None,
                           probabilities: bool = False) -> torch.Tensor:
    """Argmax over classes; for region-based models each region above 0.5 probability paints its label, in order.

    ``scores`` are logits (one model) or probabilities (an ensemble's average): the argmax is the same, the
    region threshold is 0 for logits and 0.5 for probabilities.
    """
    if regions_class_order is None:
        return scores.argmax(0).to(torch.int16)
    segmentation = torch.zeros(scores.shape[1:], dtype=torch.int16, device=scores.device)
    for region, label in zip(scores > (0.5 if probabilities else 0.0), regions_class_order, strict=True):
        segmentation[region] = label
    return segmentation


def segmentation_from_probabilities(probs: np.ndarray, regions_class_order: Sequence[int] | None,
                                    instances: InstancePlan | None, spacing: Sequence[float]) -> np.ndarray:
    """An ensemble's averaged probabilities on the input's grid (``spacing`` per axis) to its segmentation, or to
    its objects for an instance model: the scores are averaged first, the objects found once."""
    segmentation = scores_to_segmentation(torch.from_numpy(probs), regions_class_order, probabilities=True).numpy()
    return instances_from_border_core(segmentation, spacing, instances) if instances is not None else segmentation


def probabilities(scores: torch.Tensor, region_based: bool) -> torch.Tensor:
    """Softmax over classes, or one sigmoid per region."""
    return scores.sigmoid() if region_based else scores.softmax(0)


def _uncrop_untranspose(cropped: np.ndarray, properties: Mapping[str, Any], transpose_backward: Sequence[int]
                        ) -> np.ndarray:
    """Paste a ``(*cropped)`` label map into the pre-crop shape (0 outside) and transpose back."""
    full = np.zeros(properties["shape_before_cropping"], cropped.dtype)
    full[tuple(slice(a, b) for a, b in properties["bbox_used_for_cropping"])] = cropped
    return full.transpose(transpose_backward)


def input_spacing(properties: Mapping[str, Any], transpose_backward: Sequence[int]) -> list[float]:
    """The spacing of the input's own axes (a preprocessed case records it in the transposed order)."""
    return [float(properties["spacing"][a]) for a in transpose_backward]


def resample_to_cropped_grid(scores: torch.Tensor, properties: Mapping[str, Any]) -> torch.Tensor:
    """From the target spacing back to the input's spacing (linear, separate-z rule), still cropped."""
    return resample_logits(scores, properties["shape_after_cropping_and_before_resampling"],
                           properties["target_spacing"], properties["spacing"])


def streamed_segmentation(scores: torch.Tensor, resample: Callable[[torch.Tensor], torch.Tensor],
                          regions_class_order: Sequence[int] | None = None, are_probabilities: bool = False,
                          chunk: int = EXPORT_CLASS_CHUNK) -> torch.Tensor:
    """:func:`scores_to_segmentation` of ``resample(scores)``, resampling ``chunk`` classes at a time: a running
    maximum and its class (the first one on a tie, as argmax) instead of every class on the output grid, so memory
    grows with the chunk, not with the number of classes. Regions paint in their order, chunk by chunk."""
    first = resample(scores[:chunk])
    if regions_class_order is not None:
        segmentation = torch.zeros(first.shape[1:], dtype=torch.int16, device=first.device)
        for start in range(0, len(scores), chunk):
            part = first if start == 0 else resample(scores[start:start + chunk])
            labels = regions_class_order[start:start + chunk]
            for region, label in zip(part > (0.5 if are_probabilities else 0.0), labels, strict=True):
                segmentation[region] = label
        return segmentation
    best, index = first.max(0)
    segmentation = index.to(torch.int16)
    for start in range(chunk, len(scores), chunk):
        value, index = resample(scores[start:start + chunk]).max(0)
        better = value > best
        best = torch.where(better, value, best)
        segmentation[better] = (index[better] + start).to(torch.int16)
    return segmentation


def segmentation_in_original_space(scores: torch.Tensor, properties: Mapping[str, Any],
                                   transpose_backward: Sequence[int], regions_class_order: Sequence[int] | None = None,
                                   are_probabilities: bool = False, instances: InstancePlan | None = None,
                                   chunk: int = EXPORT_CLASS_CHUNK) -> np.ndarray:
    """``(z, y, x)`` labels on the grid the case was read with (before transpose and crop); for an instance
    model the objects (an instance map), separated on the input's own spacing. The classes are resampled a chunk
    at a time (:func:`streamed_segmentation`)."""
    cropped = streamed_segmentation(scores, lambda part: resample_to_cropped_grid(part, properties),
                                    regions_class_order, are_probabilities, chunk).cpu().numpy()
    if instances is not None:
        cropped = instances_from_border_core(cropped, properties["spacing"], instances)
    return _uncrop_untranspose(cropped, properties, transpose_backward)


@dataclass(frozen=True)
class ClassChunks:
    """Probabilities ``(classes, *spatial)`` made a few classes at a time, to be written without ever holding
    every class in memory (:func:`write_probabilities`)."""

    shape: tuple[int, ...]
    chunks: Iterable[np.ndarray]  # float16 ``(k, *spatial)``, in class order


def probability_chunks(probs: torch.Tensor, properties: Mapping[str, Any], transpose_backward: Sequence[int],
                       region_based: bool, chunk: int = EXPORT_CLASS_CHUNK) -> ClassChunks:
    """:func:`probabilities_in_original_space`, ``chunk`` classes at a time, each made when it is asked for."""
    full_shape = properties["shape_before_cropping"]
    inside = (slice(None), *[slice(a, b) for a, b in properties["bbox_used_for_cropping"]])
    order = [0, *[a + 1 for a in transpose_backward]]

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(probs), chunk):
            part = resample_to_cropped_grid(probs[start:start + chunk], properties)
            out = np.zeros((len(part), *full_shape), np.float16)
            if start == 0 and not region_based:
                out[0] = 1.0  # background is certain outside the crop
            out[inside] = part.cpu().numpy()
            yield out.transpose(order)

    return ClassChunks((len(probs), *(full_shape[a] for a in transpose_backward)), chunks())


def probabilities_in_original_space(probs: torch.Tensor, properties: Mapping[str, Any],
                                    transpose_backward: Sequence[int], region_based: bool,
                                    chunk: int = EXPORT_CLASS_CHUNK) -> np.ndarray:
    """``(classes, z, y, x)`` float16 probabilities on the input's grid; background is certain outside the crop.
    Filled ``chunk`` classes at a time: float32 only for the chunk being resampled."""
    streamed = probability_chunks(probs, properties, transpose_backward, region_based, chunk)
    out = np.empty(streamed.shape, np.float16)
    start = 0
    for part in streamed.chunks:
        out[start:start + len(part)] = part
        start += len(part)
    return out


def geometry_from_properties(properties: Mapping[str, Any]) -> Geometry:
    return Geometry(tuple(properties["original_spacing"]), tuple(properties["sitk_spacing"]),
                    tuple(properties["sitk_origin"]), tuple(properties["sitk_direction"]), properties["is_2d"])


def write_segmentation(segmentation: np.ndarray, path: Path, geometry: Geometry) -> None:
    """Write atomically (a unique temp name with the same ending, then rename) with the input's geometry."""
    atomic_write_named(path, lambda tmp: write_seg(segmentation, tmp, geometry), verify=verify_image_file)


def write_probabilities(path: Path, probs: np.ndarray | ClassChunks) -> None:
    """``<case>.npz`` with one array ``probabilities`` (classes, z, y, x), written atomically; :class:`ClassChunks`
    are compressed into it chunk by chunk (the file is what ``np.savez_compressed`` writes)."""
    streamed = probs if isinstance(probs, ClassChunks) else ClassChunks(probs.shape, [probs])

    def write(file: IO[bytes]) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive, \
                archive.open("probabilities.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": np.dtype(np.float16).str, "fortran_order": False,
                                                          "shape": tuple(streamed.shape)})
            for part in streamed.chunks:
                member.write(np.ascontiguousarray(part, dtype=np.float16).tobytes())

    atomic_write(path, write)


def written_completely(path: Path) -> bool:
    """Whether a prediction file (segmentation or ``.npz``) is present and complete: a rerun skips only those (a
    file cut short by a full disk, or emptied, is predicted again)."""
    if not path.is_file():
        return False
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        verify_image_file(path)
    except (UserError, OSError, zipfile.BadZipFile, zlib.error):
        return False
    return True


def mean_probabilities(members: Iterable[np.ndarray | None]) -> np.ndarray:
    """The members' class probabilities averaged in float32 (an ensemble; each member must have given them)."""
    total: np.ndarray | None = None
    count = 0
    for probabilities in members:
        if probabilities is None:
            raise ValueError("an ensemble member gave no probabilities")
        total = probabilities.astype(np.float32) if total is None else total + probabilities
        count += 1
    if total is None:
        raise ValueError("an ensemble needs at least one member")
    return total / count


def read_probabilities(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["probabilities"]
