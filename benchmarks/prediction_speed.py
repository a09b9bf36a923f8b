"""Seconds per case for prediction (1 fold / a 5-fold ensemble, with and without mirroring TTA) and for export alone.

    python -m benchmarks.prediction_speed data/preprocessed/Dataset101_BraTS2015Mini 3d_fullres \\
        ../shared/datasets/Dataset101_BraTS2015Mini/imagesTr --cases 1

Networks are randomly initialized from the plan (weights do not change the speed). Export = resampling the
class scores back to the input spacing, argmax, un-crop, un-transpose and writing the file; nnU-Net's export
takes longer than its prediction on some datasets (its issues #2540, #2912), nnlight's must not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import provenance
from nnlight.inference.export import (
    geometry_from_properties,
    segmentation_in_original_space,
    write_segmentation,
)
from nnlight.inference.folder import input_cases
from nnlight.inference.predictor import InferenceSettings, predict_preprocessed, preprocessing_settings_from_plan
from nnlight.nets import build_network
from nnlight.planning import plans_from_nnunet
from nnlight.preprocessing.case import preprocess_case
from nnlight.raw.io import image_format, read_images
from nnlight.utils.files import load_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_folder", type=Path, help="<preprocessed>/<Dataset> with nnUNetPlans.json")
    parser.add_argument("configuration")
    parser.add_argument("images", type=Path, help="a folder of <case>_XXXX images")
    parser.add_argument("--cases", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-ensemble-tta", action="store_true", help="skip the slowest variant (5 folds x TTA)")
    parser.add_argument("--export-only", action="store_true", help="one fold without TTA, then the exports")
    args = parser.parse_args()

    plans = plans_from_nnunet(load_json(args.dataset_folder / "nnUNetPlans.json"))
    dataset_json = load_json(args.dataset_folder / "dataset.json")
    plan = plans.configurations[args.configuration]
    plan_dict = {"transpose_forward": plans.transpose_forward, "spacing": plan.spacing,
                 "normalization_schemes": plan.normalization_schemes, "use_mask_for_norm": plan.use_mask_for_norm,
                 "foreground_intensity_properties_per_channel": plans.foreground_intensity_properties_per_channel,
                 "resampling": {"data": plan.resampling_data}}
    labels = dataset_json["labels"]
    torch.manual_seed(0)
    networks = [build_network(plan.architecture.network, input_channels=len(plan.normalization_schemes),
                              num_classes=len(labels), deep_supervision=False,
                              **plan.architecture.network_kwargs()).eval() for _ in range(args.folds)]
    settings = InferenceSettings(tile_size=plan.patch_size, num_outputs=len(labels),
                                 transpose_backward=plans.transpose_backward)
    mirror = tuple(range(len(plan.patch_size)))
    ending = dataset_json["file_ending"]
    cases = list(input_cases(args.images, ending, len(plan.normalization_schemes))[0].items())[: args.cases]
    device = torch.device("cpu")
    print(provenance(f"prediction speed {args.dataset_folder.name} {args.configuration}"))
    variants = [("1 fold, no TTA", 1, ()), ("1 fold, TTA", 1, mirror), (f"{args.folds} folds, no TTA", args.folds, ())]
    if not args.skip_ensemble_tta:
        variants.append((f"{args.folds} folds, TTA", args.folds, mirror))
    if args.export_only:
        variants = variants[:1]
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case_id, files in cases:
            start = time.perf_counter()
            images, geometry = read_images(files, image_format(ending))
            case = preprocess_case(images, None, geometry.spacing, preprocessing_settings_from_plan(plan_dict))
            read_preprocess = time.perf_counter() - start
            properties = {**case.properties, "original_spacing": list(geometry.spacing),
                          "sitk_spacing": list(geometry.sitk_spacing), "sitk_origin": list(geometry.sitk_origin),
                          "sitk_direction": list(geometry.sitk_direction), "is_2d": geometry.is_2d}
            print(f"{case_id}: image {list(images.shape)}, preprocessed {list(case.data.shape)}, "
                  f"tile {plan.patch_size}; read + preprocess {read_preprocess:.2f} s")
            scores = None
            for name, folds, axes in variants:
                start = time.perf_counter()
                variant = InferenceSettings(**{**settings.__dict__, "mirror_axes": axes})
                scores, _ = predict_preprocessed(networks[:folds], case.data, variant, device)
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
                print(f"  sliding window, {name}: {time.perf_counter() - start:.2f} s")
            assert scores is not None
            start = time.perf_counter()
            segmentation = segmentation_in_original_space(scores, properties, plans.transpose_backward)
            write_segmentation(segmentation, Path(tmp) / f"{case_id}{ending}", geometry_from_properties(properties))
            export = time.perf_counter() - start
            totals["export"] = totals.get("export", 0.0) + export
            print(f"  export (resample {len(labels)} classes + argmax + un-crop + write): {export:.2f} s")
            # the same scores exported to an input grid 1.25x finer in-plane: every class is really resampled
            finer = [round(n * f) for n, f in zip(case.data.shape[1:], (1.0, 1.25, 1.25), strict=True)]
            resampling = {**properties, "shape_after_cropping_and_before_resampling": finer,
                          "shape_before_cropping": finer, "bbox_used_for_cropping": [[0, n] for n in finer],
                          "spacing": [t / f for t, f in zip(case.properties["target_spacing"], (1.0, 1.25, 1.25),
                                                               strict=True)]}
            start = time.perf_counter()
            segmentation = segmentation_in_original_space(scores, resampling, plans.transpose_backward)
            write_segmentation(segmentation, Path(tmp) / f"{case_id}{ending}", geometry_from_properties(properties))
            export = time.perf_counter() - start
            totals["export with resampling"] = totals.get("export with resampling", 0.0) + export
            print(f"  export to a 1.25x finer in-plane grid {finer} (all {len(labels)} classes resampled): "
                  f"{export:.2f} s")
    n = len(cases)
    print(f"Mean per case over {n} case(s): " + ", ".join(f"{k} {v / n:.2f} s" for k, v in totals.items()))


if __name__ == "__main__":
    main()
