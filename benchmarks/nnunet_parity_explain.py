"""Why nnlight's prediction of an nnU-Net model can differ from nnU-Net's own in a few voxels.

nnU-Net 2.8.1 sums the Gaussian-weighted tile logits in float16 (``predicted_logits`` and ``n_predictions``
are ``torch.half``, the Gaussian peaks at 10); nnlight sums them in float32. This script predicts each image
with nnlight's network and tiles twice — float32 sums (nnlight) and float16 sums (nnU-Net's arithmetic) — and
compares both with nnU-Net's segmentation files. If the float16 emulation equals nnU-Net everywhere, the
accumulation precision is the whole difference.

    python benchmarks/nnunet_parity_explain.py <nnU-Net model folder> <images folder> <nnU-Net predictions> \
        [--mirroring]

Only for images nnU-Net neither crops nor resamples (the shared datasets used by nnunet_parity.sh).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from nnlight.exchange.nnunet import load_nnunet_model
from nnlight.inference.predictor import preprocessing_settings_from_plan
from nnlight.inference.sliding_window import gaussian_importance, sliding_window_predict, window_steps
from nnlight.preprocessing.case import preprocess_case
from nnlight.raw.io import image_format, read_images, read_seg


@torch.no_grad()
def float16_sums(network: torch.nn.Module, image: torch.Tensor, tile: list[int], classes: int,
                 mirror_axes: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net's accumulation: float16 Gaussian, float16 sums, float16 division (same tiles as nnlight)."""
    slice_by_slice = len(tile) == image.ndim - 2
    tile = [1, *tile] if slice_by_slice else tile
    spatial = list(image.shape[1:])
    padded = [max(s, t) for s, t in zip(spatial, tile, strict=True)]  # as both pad: centred, with zeros
    before = [(p - s) // 2 for p, s in zip(padded, spatial, strict=True)]
    image = torch.nn.functional.pad(image, [v for b, p, s in reversed(list(zip(before, padded, spatial, strict=True)))
                                            for v in (b, p - s - b)])
    gaussian = torch.from_numpy(gaussian_importance(tile)).half()  # nnU-Net: to float16, then no zeros
    gaussian[gaussian == 0] = gaussian[gaussian != 0].min()
    logits = torch.zeros((classes, *image.shape[1:]), dtype=torch.half)
    counts = torch.zeros(image.shape[1:], dtype=torch.half)
    dims = [a + 2 for a in mirror_axes]
    combos = [c for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)]
    for start in itertools.product(*window_steps(image.shape[1:], tile, 0.5)):
        region = tuple(slice(s, s + t) for s, t in zip(start, tile, strict=True))
        x = image[(slice(None), *region)][None]
        x = x[:, :, 0] if slice_by_slice else x
        prediction = network(x)
        for axes in combos:
            prediction += torch.flip(network(torch.flip(x, axes)), axes)
        prediction = (prediction / (len(combos) + 1))[0]
        prediction = prediction[:, None] if slice_by_slice else prediction
        logits[(slice(None), *region)] += prediction * gaussian
        counts[region] += gaussian
    logits /= counts
    return logits[(slice(None), *(slice(b, b + s) for b, s in zip(before, spatial, strict=True)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("nnunet_predictions", type=Path)
    parser.add_argument("--mirroring", action="store_true")
    args = parser.parse_args()
    model = load_nnunet_model(args.model)
    network, plan = model.networks[0], model.plan
    mirror_axes = model.choices.mirror_axes if args.mirroring else ()
    for theirs_file in sorted(p for p in args.nnunet_predictions.iterdir() if p.name.endswith((".nii.gz", ".png"))):
        ending = ".nii.gz" if theirs_file.name.endswith(".nii.gz") else theirs_file.suffix
        case = theirs_file.name.removesuffix(ending)
        images, geometry = read_images(sorted(args.images.glob(f"{case}_*{ending}")), image_format(ending))
        prepared = preprocess_case(images, None, geometry.spacing, preprocessing_settings_from_plan(plan))
        if list(prepared.data.shape[1:]) != list(images.shape[1:]):
            print(f"  {case}: cropped or resampled; this check needs images nnU-Net predicts on their own grid")
            continue
        data = torch.from_numpy(np.array(prepared.data))
        classes = len(plan["labels"])
        ours = sliding_window_predict(network, data, model.choices.tile_size, classes, mirror_axes=mirror_axes)
        emulated = float16_sums(network, data, model.choices.tile_size, classes, mirror_axes)
        theirs = read_seg(theirs_file, image_format(ending))[0].reshape(images.shape[1:])
        to_input = list(np.argsort(plan["transpose_forward"]))  # the network's axes back to the input's
        ours_seg = ours.argmax(0).permute(*to_input).numpy()
        emulated_seg = emulated.float().argmax(0).permute(*to_input).numpy()
        print(f"  {case}: nnlight (float32 sums) vs nnU-Net: {int((ours_seg != theirs).sum())} voxels differ; "
              f"float16 sums vs nnU-Net: {int((emulated_seg != theirs).sum())} differ; largest logit change from "
              f"float16 sums {float((ours - emulated.float()).abs().max()):.3f}")


if __name__ == "__main__":
    main()
