"""Planner settings: the constants of nnU-Net's ExperimentPlanner and its ResEnc presets.

These are inputs, not results. The presets live in ``configs/planner/*.yaml`` and map 1:1 onto this
dataclass, so ``planner.gpu_memory_target_gb=24`` on the command line reaches the planner unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class PlannerSettings:
    preset: str = "default"
    plans_name: str = "nnUNetPlans"
    nnunet_planner_class: str = "ExperimentPlanner"
    network: Literal["PlainConvUNet", "ResidualEncoderUNet"] = "PlainConvUNet"
    gpu_memory_target_gb: float = 8.0
    reference_val_3d: float = 560_000_000
    reference_val_2d: float = 85_000_000
    reference_val_corresp_gb: float = 8.0
    reference_batch_size_3d: int = 2
    reference_batch_size_2d: int = 12
    # "min_batch": shrink while a batch of 2 would exceed the budget (default planner);
    # "estimate": shrink while one reference batch would (ResEnc planners).
    shrink_rule: Literal["min_batch", "estimate"] = "min_batch"
    base_num_features: int = 32
    max_features_3d: int = 320
    max_features_2d: int = 512
    featuremap_min_edge_length: int = 4
    blocks_per_stage_encoder: list[int] = field(default_factory=lambda: [2] * 14)
    blocks_per_stage_decoder: list[int] = field(default_factory=lambda: [2] * 13)
    min_batch_size: int = 2
    max_dataset_covered: float = 0.05
    anisotropy_threshold: float = 3.0
    lowres_creation_threshold: float = 0.25
    lowres_spacing_increase_factor: float = 1.03
    # ResEnc presets reuse the default planner's preprocessed 2d/3d_fullres data.
    shared_data_identifier_plans: str | None = None
    overwrite_target_spacing: list[float] | None = None
    suppress_transpose: bool = False
    config_suffix: str = ""
    # instance datasets (dataset.json "instance_maps": true); null = from the data (see planning.instance_plan)
    border_thickness_mm: float | None = None
    min_core_volume: float | None = None  # mm³ (mm² for 2D images)
    min_object_volume: float | None = None  # mm³ (mm² for 2D images)

    def data_identifier(self, configuration: str) -> str:
        if self.shared_data_identifier_plans and configuration in ("2d", "3d_fullres"):
            return f"{self.shared_data_identifier_plans}_{configuration}"
        return f"{self.plans_name}_{configuration}"
