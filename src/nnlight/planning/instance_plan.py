"""How an instance dataset's objects become border-core labels: the thickness and size thresholds, from the data.

Defaults, from the fingerprint's object sizes (``d`` = the median object's equivalent diameter, ``V`` = its volume):
the border is 10 % of ``d`` thick, at least one voxel of the finest target spacing, so every object keeps a core
and touching objects are still separated; a predicted core smaller than 5 % of ``V`` is noise, not an object; a
border-only blob of at least 10 % of ``V`` is an object whose core was missed. Each can be set in the planner.
"""

from __future__ import annotations

import numpy as np

from nnlight.fingerprint import Fingerprint
from nnlight.planning.rules import Numbers
from nnlight.planning.settings import PlannerSettings
from nnlight.raw.dataset_json import DatasetJson
from nnlight.raw.instances import InstancePlan, equivalent_diameter
from nnlight.utils.errors import UserError

BORDER_FRACTION_OF_DIAMETER = 0.1
MIN_CORE_FRACTION_OF_VOLUME = 0.05
MIN_OBJECT_FRACTION_OF_VOLUME = 0.1


def _significant(value: float) -> float:
    return float(f"{value:.4g}")


def plan_instances(fingerprint: Fingerprint, dataset_json: DatasetJson, settings: PlannerSettings,
                   target_spacing: Numbers) -> tuple[InstancePlan, str]:
    """The conversion for an instance dataset, and the plan note that says where each value comes from."""
    stats = fingerprint.instances
    if stats is None:
        raise UserError("this dataset declares instance maps but its fingerprint has no object statistics (a "
                        "fingerprint from nnU-Net or an older nnlight); plan from the raw dataset, or recompute it "
                        "with overwrite_fingerprint=true")
    dims = int(stats["dims"])
    volume = stats["median_object_volume"]
    diameter = equivalent_diameter(volume, dims)
    finest = float(np.min(np.asarray(target_spacing, dtype=float)[-dims:]))
    thickness = settings.border_thickness_mm or _significant(max(BORDER_FRACTION_OF_DIAMETER * diameter, finest))
    unit = "mm²" if dims == 2 else "mm³"
    plan = InstancePlan(
        object_name=str(dataset_json.object_name), dims=dims, border_thickness_mm=float(thickness),
        min_core_volume=float(settings.min_core_volume if settings.min_core_volume is not None
                              else _significant(MIN_CORE_FRACTION_OF_VOLUME * volume)),
        min_object_volume=float(settings.min_object_volume if settings.min_object_volume is not None
                                else _significant(MIN_OBJECT_FRACTION_OF_VOLUME * volume)))
    source = "set by the user" if settings.border_thickness_mm else \
        f"10 % of the median object's diameter {diameter:.3g} mm, at least one voxel"
    note = (f"instance maps ({int(stats['objects'])} {plan.object_name} objects, median {volume:.4g} {unit}) learnt "
            f"as border-core: border {plan.border_thickness_mm:g} mm ({source}); predicted cores under "
            f"{plan.min_core_volume:g} {unit} are not objects, border-only blobs from {plan.min_object_volume:g} "
            f"{unit} are")
    return plan, note
