"""Seconds per batch of the device augmentation for each preset, on a BraTS-sized synthetic batch.

    python -m benchmarks.augmentation_speed [--device cuda] [--batch 2] [--patch 128 128 128] [--repeats 5]

Compares nnU-Net's default (labels resampled one-hot linearly, as batchgeneratorsv2), the default with
nearest-neighbour labels (DASegOrd0) and the DA5 set with spatial transforms forced on every sample
(p_rotation = p_scaling = 1, so the label resampling cost shows; the other transforms keep their
probabilities), and the default at its own probabilities (rotation 0.2, scaling 0.2), as training runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from benchmarks._common import provenance
from nnlight.data.augmentation import AugmentationSettings, augment, spatial_augmentation_geometry
from nnlight.pipeline.config_values import plain, typed

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _preset(name: str) -> AugmentationSettings:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        node = compose(overrides=[f"+augmentation={name}"]).augmentation
    return typed(AugmentationSettings, plain(node), "augmentation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--labels", type=int, default=4, help="label values incl. background")
    parser.add_argument("--patch", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    forced = {"p_rotation": 1.0, "p_scaling": 1.0}
    presets = {"default (linear labels)": dataclasses.replace(_preset("default"), **forced),
               "default, nearest labels": dataclasses.replace(_preset("default"), seg_interpolation="nearest",
                                                              **forced),
               "da5": dataclasses.replace(_preset("da5"), **forced),
               "default at nnU-Net's p": _preset("default")}
    print(provenance(f"augmentation speed, batch {args.batch} x {args.channels} channels, patch {args.patch}, "
                     f"{args.labels} labels, {device}"))
    for name, settings in presets.items():
        geometry = spatial_augmentation_geometry(args.patch, settings)
        size = geometry.initial_patch_size
        g = torch.Generator(device).manual_seed(0)
        images = torch.randn(args.batch, args.channels, *size, device=device)
        labels = torch.randint(0, args.labels, (args.batch, 1, *[s // 8 for s in size]), device=device)
        labels = torch.nn.functional.interpolate(labels.float(), size=size).to(torch.int16)  # blocky label maps
        times = []
        for _ in range(args.repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            augment(images.clone(), labels.clone(), args.patch, settings, geometry, g, (0,))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        steady = sorted(times[1:])[len(times[1:]) // 2]
        print(f"{name:28s} {steady:.3f} s per batch (median of {args.repeats}; initial patch {size})")


if __name__ == "__main__":
    main()
