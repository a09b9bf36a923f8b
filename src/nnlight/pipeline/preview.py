"""``nnlight-preview-augmentation``: a PNG of augmented training patches with the augmentation option a training
would use — a built-in preset or one of the researcher's own folder (``config_dir=`` / ``--config-dir`` or
``NNLIGHT_CONFIG_DIR``), with its own transforms.

    nnlight-preview-augmentation dataset=Dataset900_Demo configuration=3d_fullres [augmentation=da5]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import SimpleITK as sitk

from nnlight.data.augmentation import AugmentationSettings, check_transforms
from nnlight.data.datamodule import plan_datamodule
from nnlight.data.preview import preview_grid
from nnlight.pipeline.cli import compose_config, composition_problem
from nnlight.pipeline.config_dir import CONFIG_DIR, USER_CONFIG_VARIABLE
from nnlight.pipeline.config_values import plain, typed
from nnlight.planning import plans_from_nnunet
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import load_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a PNG of augmented training patches.",
                                     usage="nnlight-preview-augmentation dataset=<Dataset> [configuration=3d_fullres "
                                           "augmentation=default config_dir=<your configs> "
                                           "preprocessed=data/preprocessed plans=nnUNetPlans samples=8 seed=0 "
                                           "out=<file.png>]")
    parser.add_argument("dataset", help="DatasetXXX_Name (planned and preprocessed)")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--augmentation", default="default",
                        help="the augmentation option (configs/augmentation/ or your folder's augmentation/)")
    parser.add_argument("--config-dir", default=None, help="your own config folder (default: $NNLIGHT_CONFIG_DIR)")
    parser.add_argument("--preprocessed", default=os.environ.get("NNLIGHT_PREPROCESSED", "data/preprocessed"))
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="PNG path (default: <preprocessed>/<Dataset>/...)")
    return parser


def augmentation_option(dataset: str, plan_config: str, option: str) -> AugmentationSettings:
    """The ``augmentation`` group as a training of ``plan=<dataset>/<plan_config>`` composes it (the built-in
    options and the user's folder's), checked as training checks it."""
    overrides = [f"plan={dataset}/{plan_config}", f"augmentation={option}"]
    problem = composition_problem(CONFIG_DIR, "train", overrides)
    if problem:
        raise UserError(problem)
    return typed(AugmentationSettings, plain(compose_config(CONFIG_DIR, "train", overrides).augmentation),
                 "augmentation")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(key_value_arguments(_parser(), argv))
    with exit_on_user_error():
        if args.config_dir:
            if not Path(args.config_dir).is_dir():
                raise UserError(f"config_dir={args.config_dir}: no such folder")
            os.environ[USER_CONFIG_VARIABLE] = str(Path(args.config_dir).resolve())
        os.environ["NNLIGHT_PREPROCESSED"] = str(Path(args.preprocessed))  # where the plan configs are
        folder = Path(args.preprocessed) / args.dataset
        plans_file = folder / f"{args.plans}.json"
        if not plans_file.is_file():
            raise UserError(f"{plans_file}: not found; run plan.py dataset={args.dataset} first")
        plans = plans_from_nnunet(load_json(plans_file), str(plans_file))
        if args.configuration not in plans.configurations:
            raise UserError(f"configuration={args.configuration}: not planned for {args.dataset}; choose one of "
                            f"{', '.join(plans.configurations)}")
        plan = plans.configurations[args.configuration]
        suffix = "" if args.plans == "nnUNetPlans" else f"_{args.plans}"
        augmentation = augmentation_option(args.dataset, f"{args.configuration}{suffix}", args.augmentation)
        channels = len(plan.normalization_schemes)
        check_transforms(augmentation, channels, plan.patch_size)
        module = plan_datamodule(folder, plan, fold="all", batch_size=max(args.samples, 1), iterations_per_epoch=1,
                                 augmentation=augmentation, seed=args.seed)
        module.setup("fit")
        grid = preview_grid(module, args.samples, args.seed)
    out = Path(args.out) if args.out else folder / f"augmentation_preview_{args.configuration}_{args.augmentation}.png"
    sitk.WriteImage(sitk.GetImageFromArray(grid, isVector=True), str(out))
    rows = min(args.samples, module.settings.batch_size)
    print(f"Wrote {out}: {rows} rows of plain | augmented ({args.augmentation}) | augmented + labels")
