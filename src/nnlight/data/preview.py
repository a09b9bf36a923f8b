"""Write a PNG grid of augmented training patches, so a user can see what the network is trained on.

    nnlight-preview-augmentation dataset=Dataset900_Demo configuration=3d_fullres

Each row is one sampled patch: the patch without augmentation, the augmented patch, and the augmented
patch with its labels overlaid (middle slice for 3D, first channel).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from nnlight.data.datamodule import SegmentationDataModule, plan_datamodule
from nnlight.planning import plans_from_nnunet
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import load_json

PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255
    return np.repeat(scaled[..., None], 3, axis=-1)


def _overlay(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colours = PALETTE[1:][(labels.astype(int) - 1) % (len(PALETTE) - 1)]
    return np.where(labels[..., None] > 0, 0.5 * gray + 0.5 * colours, gray)


def _middle(volume: np.ndarray) -> np.ndarray:
    return volume[volume.shape[0] // 2] if volume.ndim == 3 else volume


def preview_grid(module: SegmentationDataModule, samples: int, seed: int) -> np.ndarray:
    """An RGB uint8 grid ``(rows * h, 3 * w, 3)`` of unaugmented / augmented / overlay patches."""
    torch.manual_seed(seed)
    images, labels = next(iter(module.train_dataloader()))
    patch = module.patch_size
    crop = tuple(slice((i - o) // 2, (i - o) // 2 + o) for i, o in zip(images.shape[2:], patch, strict=True))
    plain = images[(slice(None), 0, *crop)].numpy()
    augmented, targets = module.on_after_batch_transfer((images, labels), 0)
    rows = []
    for b in range(min(samples, images.shape[0])):
        aug = _gray(_middle(augmented[b, 0].numpy()))
        rows.append(np.concatenate([_gray(_middle(plain[b])), aug, _overlay(aug, _middle(targets[0][b, 0].numpy()))],
                                   axis=1))
    return np.concatenate(rows, axis=0).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a PNG of augmented training patches.",
                                     usage="nnlight-preview-augmentation dataset=<Dataset> [configuration=3d_fullres "
                                           "preprocessed=data/preprocessed plans=nnUNetPlans samples=8 seed=0 "
                                           "out=<file.png>]")
    parser.add_argument("dataset", help="DatasetXXX_Name (planned and preprocessed)")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--preprocessed", default="data/preprocessed")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="PNG path (default: <preprocessed>/<Dataset>/...)")
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        folder = Path(args.preprocessed) / args.dataset
        plans_file = folder / f"{args.plans}.json"
        if not plans_file.is_file():
            raise UserError(f"{plans_file}: not found; run plan.py dataset={args.dataset} first")
        plans = plans_from_nnunet(load_json(plans_file), str(plans_file))
        if args.configuration not in plans.configurations:
            raise UserError(f"configuration={args.configuration}: not planned for {args.dataset}; choose one of "
                            f"{', '.join(plans.configurations)}")
        plan = plans.configurations[args.configuration]
        module = plan_datamodule(folder, plan, fold="all", batch_size=max(args.samples, 1), iterations_per_epoch=1,
                                 seed=args.seed)
        module.setup("fit")
        grid = preview_grid(module, args.samples, args.seed)
    out = Path(args.out) if args.out else folder / f"augmentation_preview_{args.configuration}.png"
    sitk.WriteImage(sitk.GetImageFromArray(grid, isVector=True), str(out))
    rows = min(args.samples, module.settings.batch_size)
    print(f"Wrote {out}: {rows} rows of plain | augmented | augmented + labels")


if __name__ == "__main__":
    main()
