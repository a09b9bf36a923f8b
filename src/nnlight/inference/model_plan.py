"""The plan a trained model carries (a run folder's ``plan.json``, an ONNX folder's ``spec.json``), checked as the
schema and bounds ``nnlight-plan`` writes before prediction uses any of it: such a file may come from anyone, and a
malformed value must end with one line naming it, never with a traceback or an allocation without limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from nnlight.planning.plans import MAX_PATCH_AXIS, MAX_PATCH_VOXELS
from nnlight.preprocessing.normalization import SCHEMES
from nnlight.raw.dataset_json import parse_labels
from nnlight.raw.instances import InstancePlan
from nnlight.utils.errors import UserError
from nnlight.utils.names import configuration_name, dataset_name

MAX_CHANNELS = 64
SPACING_RANGE = (1e-6, 1e6)  # any unit nnU-Net's users work in (nm for EM, mm for CT), and no more


def _numbers(value: Any, count: int | None = None) -> TypeGuard[list[float]]:
    """A list of finite real numbers (``count`` of them)."""
    return isinstance(value, list) and (count is None or len(value) == count) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)


def _ints(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def model_plan_problem(plan: Any) -> str | None:
    """Why ``plan`` is not a plan nnlight can predict with, or None."""
    if not isinstance(plan, Mapping):
        return "the plan is not a mapping of values"
    try:
        dataset_name(plan.get("dataset"), "dataset")
        configuration_name(plan.get("configuration"), "configuration")
        if plan.get("previous_stage") is not None:
            configuration_name(plan.get("previous_stage"), "previous_stage")
    except UserError as e:
        return str(e)
    return _channel_problem(plan) or _geometry_problem(plan) or _label_problem(plan) or _resampling_problem(plan)


def _channel_problem(plan: Mapping[str, Any]) -> str | None:
    channels = plan.get("channel_names")
    if not (isinstance(channels, list) and 1 <= len(channels) <= MAX_CHANNELS and
            all(isinstance(c, str) for c in channels)):
        return f"channel_names={channels!r}: a list of 1 to {MAX_CHANNELS} names"
    schemes, masks = plan.get("normalization_schemes"), plan.get("use_mask_for_norm")
    if not (isinstance(schemes, list) and len(schemes) == len(channels) and all(s in SCHEMES for s in schemes)):
        return f"normalization_schemes={schemes!r}: one of {', '.join(SCHEMES)} per channel"
    if not (isinstance(masks, list) and len(masks) == len(channels) and all(isinstance(m, bool) for m in masks)):
        return f"use_mask_for_norm={masks!r}: true or false per channel"
    properties = plan.get("foreground_intensity_properties_per_channel")
    if not isinstance(properties, Mapping):
        return "foreground_intensity_properties_per_channel: a mapping channel -> statistics"
    for channel, scheme in enumerate(schemes):
        values = properties.get(str(channel), {})
        needed = ("mean", "std", "percentile_00_5", "percentile_99_5") if scheme == "CTNormalization" else ()
        if not isinstance(values, Mapping) or not _numbers([values.get(k) for k in needed]) or \
                not _numbers([v for v in values.values()]):
            return (f"foreground_intensity_properties_per_channel.{channel}: finite numbers"
                    f"{' (' + ', '.join(needed) + ')' if needed else ''}")
    return None


def _geometry_problem(plan: Mapping[str, Any]) -> str | None:
    spacing = plan.get("spacing")
    if not (_numbers(spacing) and len(spacing) in (2, 3) and all(SPACING_RANGE[0] <= s <= SPACING_RANGE[1]
                                                                 for s in spacing)):
        return f"spacing={spacing!r}: 2 or 3 numbers from {SPACING_RANGE[0]:g} to {SPACING_RANGE[1]:g}"
    forward, backward = plan.get("transpose_forward"), plan.get("transpose_backward")
    if not (_ints(forward) and _ints(backward) and sorted(forward) == [0, 1, 2] and
            [forward.index(a) for a in range(3)] == backward):
        return (f"transpose_forward={forward!r}, transpose_backward={backward!r}: a permutation of [0, 1, 2] and its "
                "inverse")
    return tile_problem(plan.get("patch_size"), len(spacing), "patch_size")


def tile_problem(tile: Any, dims: int, key: str) -> str | None:
    """A patch or sliding-window tile: ``dims`` whole sizes within the planner's bounds."""
    if not (_ints(tile) and len(tile) == dims and all(1 <= t <= MAX_PATCH_AXIS for t in tile)
            and math.prod(tile) <= MAX_PATCH_VOXELS):
        return f"{key}={tile!r}: {dims} sizes from 1 to {MAX_PATCH_AXIS}, at most {MAX_PATCH_VOXELS} voxels"
    return None


def _label_problem(plan: Mapping[str, Any]) -> str | None:
    problems: list[str] = []
    labels = parse_labels(plan.get("labels"), problems, "labels")
    if problems:
        return problems[0]
    regions = [k for k, v in labels.items() if isinstance(v, tuple) and k != "ignore"]
    if not any(k not in ("background", "ignore") for k in labels):
        return "labels: no class besides background; the model segments nothing"
    order = plan.get("regions_class_order")
    if regions and not (_ints(order) and len(order) == len(regions)):
        return f"regions_class_order={order!r}: one label value per region ({len(regions)})"
    if plan.get("instances"):
        try:
            InstancePlan.from_mapping(plan["instances"])
        except UserError as e:
            return str(e)
    return None


def _resampling_problem(plan: Mapping[str, Any]) -> str | None:
    data = (plan.get("resampling") or {}).get("data") if isinstance(plan.get("resampling"), Mapping) else None
    if not isinstance(data, Mapping):
        return "resampling.data: the image's resampling settings"
    orders = [data.get("order", 3), data.get("order_z", 0)]
    if not (_ints(orders) and all(0 <= o <= 5 for o in orders)) or data.get("force_separate_z") not in (None, True,
                                                                                                        False):
        return f"resampling.data={dict(data)!r}: order and order_z from 0 to 5, force_separate_z true/false/null"
    return None


def check_model_plan(plan: Any, where: str) -> None:
    problem = model_plan_problem(plan)
    if problem:
        raise UserError(f"{where}: {problem}; not a plan nnlight-plan writes (train or export the model again)")


def mirror_axes_problem(axes: Any, dims: int) -> str | None:
    """Test-time mirroring axes: distinct axes of the tile."""
    if not (_ints(axes) and len(set(axes)) == len(axes) and all(0 <= a < dims for a in axes)):
        return f"mirror_axes={axes!r}: distinct axes from 0 to {dims - 1}"
    return None
