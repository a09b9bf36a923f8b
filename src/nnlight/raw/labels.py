"""What a dataset's labels mean for training, inference and evaluation (nnU-Net's ``LabelManager``).

Labels vs regions, the ignore label and the number of network outputs are facts of the dataset: they are
read from ``dataset.json`` (or the plan, which copies its labels) and never from a method option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LabelValue = int | tuple[int, ...]
NOT_FOREGROUND = ("background", "ignore")


def label_key(value: int | Sequence[int]) -> str:
    """``"2"`` for a label, ``"1,2,3"`` for a region: the keys of summaries and class-location files."""
    return str(value) if isinstance(value, int) else ",".join(str(v) for v in value)


@dataclass(frozen=True)
class LabelLayout:
    """A dataset's labels (regions as tuples, in dataset.json order) and, for regions, the paint order."""

    labels: Mapping[str, LabelValue]
    regions_class_order: tuple[int, ...] | None = None

    @classmethod
    def from_mapping(cls, labels: Mapping[str, Any], regions_class_order: Sequence[int] | None = None
                     ) -> LabelLayout:
        """From dataset.json / plan values, where regions are lists."""
        parsed = {str(k): int(v) if isinstance(v, int) else tuple(int(x) for x in v) for k, v in labels.items()}
        return cls(parsed, tuple(int(i) for i in regions_class_order) if regions_class_order else None)

    @property
    def ignore_label(self) -> int | None:
        value = self.labels.get("ignore")
        return value if isinstance(value, int) else None

    @property
    def has_regions(self) -> bool:
        """Region-based training: one sigmoid output per region (e.g. BraTS's nested tumour regions)."""
        return any(isinstance(v, tuple) for k, v in self.labels.items() if k != "ignore")

    @property
    def label_values(self) -> list[int]:
        """All integer label values except the ignore label, sorted (nnU-Net's ``all_labels``)."""
        values: set[int] = set()
        for name, value in self.labels.items():
            if name != "ignore":
                values.update(value if isinstance(value, tuple) else (value,))
        return sorted(values)

    @property
    def regions(self) -> list[tuple[int, ...]]:
        """The regions in order, each as the label values it covers (empty for a dataset of labels)."""
        if not self.has_regions:
            return []
        return [v if isinstance(v, tuple) else (v,) for k, v in self.labels.items() if k not in NOT_FOREGROUND]

    @property
    def foreground(self) -> list[LabelValue]:
        """What the network predicts besides background: the regions in order, or the labels > 0."""
        if self.has_regions:
            return list[LabelValue](self.regions)
        return [v for v in self.label_values if v > 0]

    @property
    def foreground_values(self) -> list[int]:
        """Every label value that is foreground (regions contribute their members)."""
        return sorted({v for value in self.foreground for v in ((value,) if isinstance(value, int) else value)})

    @property
    def num_outputs(self) -> int:
        """One output per label (background included), or one per region (background excluded)."""
        return len(self.foreground) if self.has_regions else len(self.label_values)

    @property
    def annotated_area(self) -> tuple[int, ...] | None:
        """With an ignore label: every value that is not ignored (-1 = outside the crop), as nnU-Net samples it."""
        return (-1, *self.label_values) if self.ignore_label is not None else None

    @property
    def sampling_classes(self) -> list[LabelValue]:
        """Classes whose voxel locations are stored for foreground oversampling."""
        annotated = self.annotated_area
        return [*self.foreground, *([annotated] if annotated else [])]

    def describe(self) -> str:
        """One phrase for messages: ``3 labels`` / ``3 regions (sigmoid outputs)`` (+ ignore label)."""
        kind = (f"{len(self.foreground)} regions (sigmoid outputs)" if self.has_regions
                else f"{len(self.foreground)} foreground labels (softmax outputs)")
        return kind + (f", ignore label {self.ignore_label}" if self.ignore_label is not None else "")
