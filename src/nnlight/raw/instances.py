"""Instance maps (every object its own id) and their border-core representation, both ways.

A network learns three semantic labels instead of ids: background, each object's interior ("core") and a ring of
fixed physical thickness along its boundary ("border"), which is where touching objects meet. Prediction turns the
cores back into objects: connected cores, grown through the border voxels in order of physical distance. The
thickness and the size thresholds are physical (mm, mm² / mm³), so anisotropic grids get the same ring on every
axis. Everything is vectorised with scipy.ndimage: the loops run over axes, neighbour offsets or objects, never
over voxels.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from nnlight.utils.errors import UserError

CORE, BORDER = 1, 2


def border_core_labels(object_name: str) -> dict[str, int]:
    """The semantic labels a network learns for objects called ``object_name``."""
    return {"background": 0, f"{object_name}_core": CORE, f"{object_name}_border": BORDER}


@dataclass(frozen=True)
class InstancePlan:
    """How a dataset's instance maps become border-core labels and back: planned from the data, kept in the plan."""

    object_name: str  # dataset.json's one foreground label, e.g. "cell"
    dims: int  # 2 for 2D images (areas in mm²), 3 for volumes (mm³)
    border_thickness_mm: float  # object voxels within this distance of the object's boundary are "border"
    min_core_volume: float  # a predicted core smaller than this (mm² / mm³) is not an object of its own
    min_object_volume: float  # a border-only blob at least this large becomes its own object; smaller ones merge

    @property
    def labels(self) -> dict[str, int]:
        """The semantic labels training sees."""
        return border_core_labels(self.object_name)

    @property
    def object_labels(self) -> dict[str, int]:
        """The labels of an instance map once every object is counted as foreground: what Dice is scored on."""
        return {"background": 0, self.object_name: 1}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "plan.instances") -> InstancePlan:
        try:
            plan = cls(str(values["object_name"]), int(values["dims"]), float(values["border_thickness_mm"]),
                       float(values["min_core_volume"]), float(values["min_object_volume"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: not an instance plan written by nnlight-plan (missing or malformed {e}); "
                            "re-run nnlight-plan dataset=<Dataset> overwrite_configs=true") from None
        if plan.dims not in (2, 3) or plan.border_thickness_mm <= 0 or min(plan.min_core_volume,
                                                                           plan.min_object_volume) < 0:
            raise UserError(f"{where}: dims must be 2 or 3, border_thickness_mm positive and the volumes >= 0; "
                            f"found {plan.to_dict()}")
        return plan


def voxel_volume(spacing: Sequence[float], dims: int) -> float:
    """mm³ per voxel (mm² for 2D images: the last two axes; the dummy slice axis has no extent)."""
    return float(np.prod(np.asarray(spacing, dtype=np.float64)[-dims:]))


def object_volumes(instance_map: np.ndarray, spacing: Sequence[float], dims: int) -> np.ndarray:
    """The volume (mm³, or mm² in 2D) of every object present in ``instance_map``."""
    _, counts = np.unique(instance_map[instance_map > 0], return_counts=True)
    return counts * voxel_volume(spacing, dims)


def equivalent_diameter(volume: float, dims: int) -> float:
    """The diameter of the disc (2D) or ball (3D) of this area / volume."""
    return float(np.sqrt(4 * volume / np.pi) if dims == 2 else np.cbrt(6 * volume / np.pi))


MAX_EXACT_ID = 2 ** 53  # a float holds every whole number below this exactly, and no larger one


def compact_ids(instance_map: np.ndarray) -> np.ndarray:
    """The objects numbered 1..N in the order of their ids (0 stays background, a negative value -1): everything
    later that counts or indexes by id then needs memory for N objects, not for the largest id's value (a map with
    the id 4294967294 or 1e12 would otherwise ask for gigabytes)."""
    values, inverse = np.unique(instance_map, return_inverse=True)
    renumbered = np.zeros(len(values), np.int64)
    positive = values > 0
    renumbered[positive] = np.arange(1, int(positive.sum()) + 1)
    renumbered[values < 0] = -1
    dtype = np.int32 if positive.sum() < np.iinfo(np.int32).max else np.int64
    return renumbered[inverse].reshape(instance_map.shape).astype(dtype)


def instance_map_problems(instance_map: np.ndarray, where: str) -> list[str]:
    """Why a label file is not a usable instance map: non-integer or negative ids, ids at the type's limit (an
    overflow when it was saved) or beyond what a float holds exactly, or one id per class instead of per object
    (a semantic map)."""
    if np.issubdtype(instance_map.dtype, np.floating) and (
            not np.all(np.isfinite(instance_map)) or np.any(instance_map != np.round(instance_map))):
        return [f"{where}: object ids are not integers (found fractional values); an instance map gives each "
                "object one integer id — re-save it as an integer image"]
    if np.issubdtype(instance_map.dtype, np.floating) and instance_map.size and \
            np.abs(instance_map).max() >= MAX_EXACT_ID:
        return [f"{where}: object id {np.abs(instance_map).max():g} is too large to be an exact whole number in a "
                f"float image (below {MAX_EXACT_ID:g}); number the objects 1, 2, ... and save it as an integer image"]
    if np.any(instance_map < 0):
        return [f"{where}: negative object ids; use 0 for background and 1, 2, ... for the objects"]
    if np.issubdtype(instance_map.dtype, np.integer) and instance_map.size and \
            instance_map.max() == np.iinfo(instance_map.dtype).max:
        return [f"{where}: an object id reaches {np.iinfo(instance_map.dtype).max}, the largest value "
                f"{instance_map.dtype} holds: ids may have overflowed when it was saved; save it as uint32"]
    ids = np.unique(instance_map[instance_map > 0])
    split = split_objects(compact_ids(instance_map))  # compact id k is ids[k - 1]
    if len(ids) and len(split) * 2 > len(ids):
        return [f"{where}: looks like a semantic map, not an instance map: {len(split)} of its {len(ids)} id(s) "
                f"each cover several separate regions (e.g. id {int(ids[split[0] - 1])}). Give every object its own id "
                "(e.g. number the connected regions), or remove \"instance_maps\" from dataset.json"]
    return []


def split_objects(instance_map: np.ndarray) -> list[int]:
    """Ids whose voxels form more than one connected region (full connectivity), each labelled in its bounding box.
    Memory grows with the largest id: give it :func:`compact_ids`."""
    ids = np.asarray(instance_map)
    if np.issubdtype(ids.dtype, np.floating):
        ids = ids.astype(np.int64)
    structure = ndimage.generate_binary_structure(ids.ndim, ids.ndim)
    split = []
    for index, box in enumerate(ndimage.find_objects(np.where(ids > 0, ids, 0)), start=1):
        if box is not None and ndimage.label(ids[box] == index, structure)[1] > 1:
            split.append(index)
    return split


def _pairs(axis: int, ndim: int, offset: int = 1) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    low = tuple(slice(0, -offset) if a == axis else slice(None) for a in range(ndim))
    high = tuple(slice(offset, None) if a == axis else slice(None) for a in range(ndim))
    return low, high


def object_boundary(ids: np.ndarray) -> np.ndarray:
    """Object voxels with a face neighbour of another value (background, another object, outside the crop)."""
    edge = np.zeros(ids.shape, bool)
    for axis in range(ids.ndim):
        if ids.shape[axis] < 2:
            continue
        low, high = _pairs(axis, ids.ndim)
        differs = ids[low] != ids[high]
        edge[low] |= differs
        edge[high] |= differs
    return edge & (ids > 0)


def border_core(ids: np.ndarray, spacing: Sequence[float], thickness_mm: float) -> np.ndarray:
    """int8 border-core labels of an instance map: an object's voxels within ``thickness_mm`` of its boundary are
    BORDER, the rest CORE; negative values (outside the crop) are kept."""
    objects = ids > 0
    interior = objects & ~object_boundary(ids)
    distance = ndimage.distance_transform_edt(interior, sampling=spacing) if interior.any() else \
        np.zeros(ids.shape)
    labels = np.where(objects, np.where(distance > thickness_mm, CORE, BORDER), 0).astype(np.int8)
    labels[ids < 0] = -1
    return labels


def instances_from_border_core(labels: np.ndarray, spacing: Sequence[float], plan: InstancePlan) -> np.ndarray:
    """An instance map (uint16, or uint32 beyond 65535 objects) from predicted border-core labels.

    Connected cores (face connectivity) at least ``min_core_volume`` large seed the objects; every other predicted
    object voxel (border, or a core too small) joins the core nearest to it in physical distance, so touching
    objects split where their fronts meet, on anisotropic grids too. A piece cut off from its core (by background)
    (the nearest core lies behind background or another object) is a fragment, as is a blob when no core is left:
    a fragment touching other objects joins the one it shares the most boundary with; an isolated one is an object
    of its own when at least ``min_object_volume`` large, else dropped. Objects are numbered 1..N.
    """
    labels = np.asarray(labels)
    objects = labels > 0
    per_voxel = voxel_volume(spacing, plan.dims)
    cores, count = ndimage.label(labels == CORE)
    if count:
        small = np.bincount(cores.ravel(), minlength=count + 1) * per_voxel < plan.min_core_volume
        small[0] = False
        cores[small[cores]] = 0
    assigned = np.zeros(labels.shape, np.int32)
    if cores.any():
        nearest = ndimage.distance_transform_edt(cores == 0, sampling=spacing, return_distances=False,
                                                 return_indices=True)
        assigned = np.where(objects, cores[tuple(nearest)], 0).astype(np.int32)
    fragments = _split_off_fragments(assigned, cores)
    orphans, found = ndimage.label(objects & (assigned == 0))
    if found:
        first = int(assigned.max()) + 1
        assigned[orphans > 0] = orphans[orphans > 0] + (first - 1)
        fragments = np.concatenate([fragments, np.arange(first, first + found)])
    if len(fragments):
        boundaries = shared_boundaries(assigned)
        touching = {i for pair in boundaries for i in pair}
        volumes = np.bincount(assigned.ravel())[fragments] * per_voxel
        merged = [f for f, v in zip(fragments.tolist(), volumes, strict=True)
                  if f in touching or v < plan.min_object_volume]  # isolated ones without a neighbour: dropped
        assigned = merge_into_neighbours(assigned, merged, boundaries)
    return relabel_consecutive(assigned)


def _split_off_fragments(assigned: np.ndarray, cores: np.ndarray) -> np.ndarray:
    """Give every piece of an object that is not connected to its core a new id (in place); returns those ids."""
    fragments: list[int] = []
    next_id = int(assigned.max()) + 1
    for index, box in enumerate(ndimage.find_objects(assigned), start=1):
        if box is None:
            continue
        pieces, n = ndimage.label(assigned[box] == index)
        if n < 2:
            continue
        core_voxels = np.bincount(pieces[cores[box] == index], minlength=n + 1)
        keep = int(np.argmax(core_voxels[1:])) + 1
        region = assigned[box]
        for piece in range(1, n + 1):
            if piece != keep:
                region[pieces == piece] = next_id
                fragments.append(next_id)
                next_id += 1
    return np.asarray(fragments, np.int64)


def shared_boundaries(ids: np.ndarray) -> dict[tuple[int, int], int]:
    """How many neighbouring voxel pairs (full connectivity) each pair of different objects shares."""
    counts: dict[tuple[int, int], int] = {}
    for offset in itertools.product((-1, 0, 1), repeat=ids.ndim):
        if offset <= (0,) * ids.ndim:  # each direction once
            continue
        a = tuple(slice(max(-o, 0), ids.shape[i] - max(o, 0)) for i, o in enumerate(offset))
        b = tuple(slice(max(o, 0), ids.shape[i] - max(-o, 0)) for i, o in enumerate(offset))
        first, second = ids[a].ravel(), ids[b].ravel()
        touching = (first != second) & (first > 0) & (second > 0)
        if not touching.any():
            continue
        pairs = np.stack([np.minimum(first[touching], second[touching]),
                          np.maximum(first[touching], second[touching])], axis=1).astype(np.int64)
        keys, n = np.unique(pairs, axis=0, return_counts=True)
        for (x, y), c in zip(keys.tolist(), n.tolist(), strict=True):
            counts[(x, y)] = counts.get((x, y), 0) + c
    return counts


def merge_into_neighbours(ids: np.ndarray, small: Sequence[int] | np.ndarray,
                          boundaries: Mapping[tuple[int, int], int] | None = None) -> np.ndarray:
    """Each of the ``small`` objects joins the object it shares the most boundary with (a chain of small objects
    ends at the first other one), or is removed when it touches none. ``boundaries``: :func:`shared_boundaries`
    of ``ids`` when already counted."""
    small_set = {int(s) for s in small}
    if not small_set:
        return ids
    best: dict[int, tuple[int, int]] = {}
    for (x, y), c in (shared_boundaries(ids) if boundaries is None else boundaries).items():
        for own, other in ((x, y), (y, x)):
            if own in small_set and (own not in best or c > best[own][1]):
                best[own] = (other, c)
    lookup = np.arange(int(ids.max()) + 1, dtype=ids.dtype)
    for s in small_set:
        target, seen = s, {s}
        while target in small_set:
            target = best[target][0] if target in best else 0
            if target in seen:  # two small objects touching only each other: together, under the first
                target = min(seen)
                break
            seen.add(target)
        lookup[s] = target
    return lookup[ids]


def relabel_consecutive(ids: np.ndarray) -> np.ndarray:
    """Ids 1..N in order of the old ids; uint16, or uint32 beyond 65535 objects."""
    present = np.flatnonzero(np.bincount(ids.ravel().astype(np.int64)))
    present = present[present > 0]
    lookup = np.zeros(int(ids.max(initial=0)) + 1, np.uint32)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[ids].astype(np.uint16 if len(present) <= np.iinfo(np.uint16).max else np.uint32)


def instances_from_mask(mask: np.ndarray) -> np.ndarray:
    """Connected regions (face connectivity) of a binary mask as an instance map: how a semantic prediction
    becomes objects, and how a membrane dataset's interiors become its reference objects."""
    ids, _ = ndimage.label(mask)
    return relabel_consecutive(ids)
