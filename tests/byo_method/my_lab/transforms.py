"""A lab's own augmentation: cut-out (DeVries & Taylor 2017), one zeroed box per chosen sample."""

from __future__ import annotations

import torch

from nnlight.data.transforms import BatchTransform


class CutOut(BatchTransform):
    """Zero a random box of ``size`` (fraction of each axis) in every channel of the chosen samples."""

    def __init__(self, p: float, size: float = 0.25) -> None:
        super().__init__(p)
        self.size = size

    def apply(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.clone()
        for sample in images:
            box = []
            for extent in sample.shape[1:]:
                width = max(1, int(extent * self.size))
                start = int(torch.randint(0, extent - width + 1, (1,), generator=generator, device=images.device))
                box.append(slice(start, start + width))
            sample[(slice(None), *box)] = 0
        return images, labels
