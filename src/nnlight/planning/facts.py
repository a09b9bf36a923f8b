"""The dataset facts a planned configuration carries: what training and inference take from the plan.

Labels vs regions, the ignore label, which channels were normalized inside the non-zero mask, the number of
input channels and the cascade stage are properties of the dataset and its plan. Method options (loss,
augmentation, ...) never set them; a method option that contradicts them is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnlight.raw.instances import InstancePlan
from nnlight.raw.labels import LabelLayout, LabelValue
from nnlight.utils.errors import UserError


@dataclass(frozen=True)
class DatasetFacts:
    dataset: str
    configuration: str
    layout: LabelLayout
    channel_names: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    previous_stage: str | None = None  # the cascade's full-resolution stage trains on the low-res predictions
    instances: InstancePlan | None = None  # instance datasets: border-core labels, turned back into objects

    @property
    def evaluation_labels(self) -> dict[str, LabelValue]:
        """What predictions are scored on: the labels, or for instance datasets the objects as one label."""
        return dict(self.instances.object_labels if self.instances else self.layout.labels)

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any], where: str = "plan") -> DatasetFacts:
        """From a generated plan config (or a run folder's ``plan.json``)."""
        try:
            return cls(str(plan["dataset"]), str(plan["configuration"]),
                       LabelLayout.from_mapping(plan["labels"], plan.get("regions_class_order")),
                       tuple(str(c) for c in plan["channel_names"]),
                       tuple(bool(u) for u in plan["use_mask_for_norm"]), plan.get("previous_stage"),
                       InstancePlan.from_mapping(plan["instances"], f"{where}: instances")
                       if plan.get("instances") else None)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: not a plan written by nnlight-plan (missing or malformed {e}); re-run "
                            "nnlight-plan dataset=<Dataset> overwrite_configs=true") from None

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def previous_stage_labels(self) -> tuple[int, ...]:
        """The cascade: the label values whose one-hot maps of the low-res segmentation are extra input channels
        (nnU-Net's ``foreground_labels``: label values, also for region datasets)."""
        return tuple(v for v in self.layout.label_values if v > 0) if self.previous_stage else ()

    @property
    def network_input_channels(self) -> int:
        """Image channels, plus one per foreground label for a cascade stage."""
        return self.num_channels + len(self.previous_stage_labels)

    @property
    def mask_channels(self) -> tuple[int, ...]:
        """Channels z-scored inside the non-zero mask: augmentation sets them to 0 outside it again."""
        return tuple(i for i, use in enumerate(self.use_mask_for_norm) if use)
