"""How often the ONNX export of a model segments a pixel as the PyTorch model does, on real images.

    python -m benchmarks.onnx_agreement [--dataset ../shared/datasets/Dataset104_DRIVE] [--images 4]
        [--work /tmp/nnlight-onnx]

The dataset's 2d configuration is planned and trained briefly on fold 0 (the agreement is about the export, not the
accuracy: an undertrained network has more near-ties, the harder case), exported with ``nnlight-model export
format=onnx``, and the first ``--images`` training images are predicted by both, mirroring on (predict.py's
default). Needs the onnx extra (pip install 'nnlight[onnx]').
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import provenance
from nnlight.exchange.model_cli import main as model_cli
from nnlight.exchange.onnx_model import onnx_model
from nnlight.inference.predictor import Predictor
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.raw.io import image_format, read_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/datasets/Dataset104_DRIVE"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-onnx"))
    args = parser.parse_args()
    dataset, work = args.dataset.resolve(), args.work.resolve()
    if not dataset.is_dir():
        raise SystemExit(f"{dataset}: not found; point --dataset at a dataset in nnU-Net's raw format")
    env = {**os.environ, "NNLIGHT_RAW": str(dataset.parent), "NNLIGHT_PREPROCESSED": str(work / "pre"),
           "NNLIGHT_RESULTS": str(work / "results")}
    experiment = work / "results" / dataset.name / "2d"
    if not list(experiment.glob("*/fold_0")):
        for command in (["plan", f"dataset={dataset.name}"],
                        ["train", f"plan={dataset.name}/2d", "data.fold=0", "trainer.max_epochs=1",
                         "data.iterations_per_epoch=5", "data.val_iterations_per_epoch=1", "validation.enabled=false"]):
            subprocess.run([sys.executable, "-m", "nnlight", *command], env=env, check=True,
                           stdout=subprocess.DEVNULL)
    model = next(experiment.glob("*/fold_0")).parent
    model_cli(["export", "format=onnx", f"dataset={dataset.name}", f"model=2d/{model.name}",
               f"output={work / 'onnx'}", f"results={work / 'results'}", "folds=0"])
    by_torch = Predictor.from_model_folder(model, ["0"], device="cpu", precision="32")
    by_onnx, _ = onnx_model(work / "onnx")
    ending = load_dataset_json(dataset / "dataset.json").file_ending
    print(provenance("benchmarks.onnx_agreement"))
    print(f"{dataset.name}, 2d fold 0 ({model.name}), mirroring on, tile {by_torch.inference.tile_size}\n")
    print("| image | pixels | equal | agreement | PyTorch (s) | onnxruntime (s) |")
    print("|---|---|---|---|---|---|")
    same = total = 0
    for first in sorted(dataset.glob(f"imagesTr/*_0000{ending}"))[:args.images]:
        case = first.name.removesuffix(f"_0000{ending}")
        images, geometry = read_images(sorted(dataset.glob(f"imagesTr/{case}_[0-9][0-9][0-9][0-9]{ending}")),
                                       image_format(ending))
        results, seconds = [], []
        for predictor in (by_torch, by_onnx):
            start = time.perf_counter()
            results.append(predictor.predict(images, geometry).segmentation)
            seconds.append(time.perf_counter() - start)
        equal = int((results[0] == results[1]).sum())
        same, total = same + equal, total + results[0].size
        print(f"| {case} | {results[0].size:,} | {equal:,} | {equal / results[0].size:.4%} | {seconds[0]:.1f} | "
              f"{seconds[1]:.1f} |")
    print(f"| all | {total:,} | {same:,} | {same / total:.4%} | | |")


if __name__ == "__main__":
    main()
