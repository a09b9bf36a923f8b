"""Instance maps ↔ border-core labels: the same objects come back, touching objects stay apart, sizes are physical."""

from __future__ import annotations

import numpy as np
import pytest

from nnlight.evaluation.object_metrics import instance_metrics
from nnlight.raw.instances import (
    BORDER,
    CORE,
    InstancePlan,
    border_core,
    compact_ids,
    instance_map_problems,
    instances_from_border_core,
    merge_into_neighbours,
    object_volumes,
    relabel_consecutive,
)
from nnlight.raw.synthetic import synthetic_cells

SPACING_2D = (999.0, 1.0, 1.0)  # a 2D image as (1, y, x) with nnU-Net's dummy slice spacing


def _plan(thickness: float = 1.5, dims: int = 2, min_core: float = 2.0, min_object: float = 3.0) -> InstancePlan:
    return InstancePlan("cell", dims, thickness, min_core, min_object)


def _round_trip(ids: np.ndarray, spacing: tuple[float, ...], plan: InstancePlan) -> np.ndarray:
    return instances_from_border_core(border_core(ids, spacing, plan.border_thickness_mm), spacing, plan)


def test_two_touching_squares_stay_two_objects_with_their_own_voxels() -> None:
    ids = np.zeros((1, 40, 60), np.int32)
    ids[0, 5:20, 5:20], ids[0, 5:20, 20:35], ids[0, 25:38, 40:55] = 1, 2, 3
    labels = border_core(ids, SPACING_2D, 1.5)
    assert (labels[ids == 0] == 0).all() and set(np.unique(labels[ids > 0])) == {CORE, BORDER}
    assert (labels[0, 5:20, 19] == BORDER).all() and (labels[0, 5:20, 20] == BORDER).all()  # where they touch
    back = _round_trip(ids, SPACING_2D, _plan())
    for obj in (1, 2, 3):
        assert len(np.unique(back[ids == obj])) == 1  # every voxel of an object in one predicted object
    assert len(np.unique(back)) == 4 and back.dtype == np.uint16
    assert instance_metrics(ids, back)["SEG"] == 1.0


def test_touching_boxes_on_an_anisotropic_grid_come_back_exactly() -> None:
    ids = np.zeros((12, 40, 40), np.int32)
    ids[1:11, 2:18, 2:20], ids[1:11, 2:18, 20:38] = 1, 2  # touching in-plane
    ids[1:6, 22:38, 2:38], ids[6:11, 22:38, 2:38] = 3, 4  # touching across the coarse axis
    spacing = (3.0, 1.0, 1.0)
    back = _round_trip(ids, spacing, _plan(1.5, dims=3, min_core=5.0, min_object=10.0))
    scores = instance_metrics(ids, back)
    assert scores["SEG"] == 1.0 and scores["ARE"] == 0.0 and scores["n_pred_objects"] == 4


@pytest.mark.parametrize("shape, spacing, min_f1", [((96, 96), (1.0, 1.0), 1.0), ((16, 72, 72), (3.0, 1.0, 1.0), 0.95)],
                         ids=["2d", "anisotropic-3d"])
def test_perfect_border_core_of_touching_overlapping_cells_gives_the_objects_back(shape, spacing, min_f1) -> None:
    _, cells = synthetic_cells(shape, spacing, 25, 6.0, np.random.default_rng(0))
    ids = cells[None] if len(shape) == 2 else cells
    touching = (ids[..., :-1] != ids[..., 1:]) & (ids[..., :-1] > 0) & (ids[..., 1:] > 0)
    assert touching.any(), "the generator must make touching cells"
    back = _round_trip(ids, SPACING_2D if len(shape) == 2 else spacing, _plan(1.2, len(shape), 5.0, 10.0))
    scores = instance_metrics(ids, back)
    # overlapping cells: the hidden part of a cell is not where the nearest core would put it, and on 3 mm slices a
    # small, mostly hidden cell can lose its core (then a neighbour takes it): close, not exact
    assert scores["F1"] >= min_f1 and scores["SEG"] > 0.95


def test_the_border_ring_is_as_thick_in_mm_along_the_coarse_axis() -> None:
    ids = np.zeros((20, 40, 40), np.int32)
    ids[2:18, 5:35, 5:35] = 1  # 48 mm deep at 3 mm per slice, 30 mm wide at 1 mm
    labels = border_core(ids, (3.0, 1.0, 1.0), 3.0)
    column = labels[:, 20, 20]
    assert list(column[2:5]) == [BORDER, BORDER, CORE]  # 0 and 3 mm from the face: border, 6 mm: core
    row = labels[10, 20, :]
    assert list(row[5:10]) == [BORDER] * 4 + [CORE]  # 0..3 mm: border (4 voxels at 1 mm)


def test_a_small_blob_merges_into_the_neighbour_it_shares_most_boundary_with() -> None:
    ids = np.zeros((1, 10, 10), np.int32)
    ids[0, :, :5], ids[0, :, 5:], ids[0, 4:6, 5:8] = 1, 2, 3  # blob 3 touches 1 along 2 voxels, 2 along many
    merged = merge_into_neighbours(ids, [3])
    assert set(np.unique(merged).tolist()) == {1, 2} and (merged[ids == 3] == 2).all()
    alone = np.zeros((1, 10, 10), np.int32)
    alone[0, 0, 0] = 5
    assert not merge_into_neighbours(alone, [5]).any()  # no neighbour: removed


def test_predicted_noise_cores_are_not_objects_and_a_large_border_only_blob_is() -> None:
    labels = np.zeros((1, 30, 30), np.int8)
    labels[0, 2:12, 2:12] = BORDER
    labels[0, 4:10, 4:10] = CORE  # an object
    labels[0, 20, 20] = CORE  # a one-voxel core: noise
    labels[0, 18:26, 2:10] = BORDER  # 64 mm² of border without a core: a cell whose core was missed
    labels[0, 28, 28] = BORDER  # a stray border voxel: dropped
    objects = instances_from_border_core(labels, SPACING_2D, _plan(min_core=4.0, min_object=10.0))
    assert len(np.unique(objects)) - 1 == 2
    assert objects[0, 20, 20] == 0 and objects[0, 28, 28] == 0


def test_beyond_65535_objects_the_map_is_uint32() -> None:
    ids = np.arange(70000, dtype=np.int64).reshape(1, 1, 70000) * 2  # gaps: renumbered 1..N
    relabelled = relabel_consecutive(ids)
    assert relabelled.dtype == np.uint32 and relabelled.max() == 69999


@pytest.mark.parametrize("make, expected", [
    (lambda: np.array([[0, 1.5], [2, 2]], np.float32), "not integers"),
    (lambda: np.array([[0, 255], [1, 2]], np.uint8), "largest value uint8 holds"),
    (lambda: np.array([[0, -3], [1, 2]], np.int16), "negative"),
    (lambda: np.array([[1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]], np.uint8), "semantic map"),
], ids=["float-ids", "dtype-limit", "negative", "semantic"])
def test_wrong_instance_maps_are_named(make, expected: str) -> None:
    problems = instance_map_problems(make()[None], "labelsTr/c.png")
    assert len(problems) == 1 and expected in problems[0] and problems[0].startswith("labelsTr/c.png")


def test_an_instance_map_with_integral_float_ids_is_accepted() -> None:
    assert instance_map_problems(np.array([[[0, 1], [2, 2]]], np.float32), "x") == []


@pytest.mark.parametrize("dtype, big", [(np.uint32, 4294967294), (np.uint64, 2 ** 40), (np.float64, 1e12),
                                        (np.int64, 2 ** 62)])
def test_ids_near_their_types_limit_cost_memory_for_the_objects_only(dtype, big) -> None:
    """Three touching cells, one with a huge id: checked, counted and split within memory for three objects (the
    old code allocated an array as long as the largest id: MemoryError)."""
    cells = np.zeros((1, 8, 12), dtype)
    cells[0, 2:6, 1:4], cells[0, 2:6, 4:8], cells[0, 2:6, 8:11] = 1, big, 3
    assert instance_map_problems(cells, "x") == []
    compact = compact_ids(cells)
    assert compact.dtype == np.int32 and sorted(np.unique(compact)) == [0, 1, 2, 3]
    assert compact[0, 3, 5] == 3 and compact[0, 3, 9] == 2  # numbered in the order of the given ids
    assert len(object_volumes(cells, (1.0, 1.0, 1.0), 2)) == 3
    scores = instance_metrics(cells[0], cells[0])
    assert scores["F1"] == 1.0 and scores["PQ"] == 1.0


def test_an_id_a_float_cannot_hold_exactly_is_one_line() -> None:
    problems = instance_map_problems(np.array([[[0, 1e20], [1, 1]]], np.float64), "labelsTr/c.nii.gz")
    assert problems == ["labelsTr/c.nii.gz: object id 1e+20 is too large to be an exact whole number in a float "
                        "image (below 9.0072e+15); number the objects 1, 2, ... and save it as an integer image"]
