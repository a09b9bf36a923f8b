"""A small encoder-decoder with one skip: the README's "add your own architecture" example."""

from __future__ import annotations

import torch
from torch import nn


class TinySkipNet(nn.Module):
    """Conv -> downsample by 2 -> conv -> upsample -> concat skip -> 1x1 head; works in 2D and 3D."""

    patch_divisible_by = 2  # one downsampling step (the YAML may say it instead)

    def __init__(self, in_channels: int, n_classes: int, dims: int, width: int = 8) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        up = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        norm = nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d
        self.encode = nn.Sequential(conv(in_channels, width, 3, padding=1), norm(width, affine=True), nn.LeakyReLU())
        self.down = nn.Sequential(conv(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU())
        self.up = up(2 * width, width, 2, stride=2)
        self.decode = nn.Sequential(conv(2 * width, width, 3, padding=1), nn.LeakyReLU())
        self.head = conv(width, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.encode(x)
        return self.head(self.decode(torch.cat((self.up(self.down(skip)), skip), dim=1)))
