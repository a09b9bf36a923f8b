"""``nnlight-plot-overlays``: one PNG per training case, the image with its labels drawn over it, to check a
dataset's labels by eye before planning (nnU-Net's ``nnUNetv2_plot_overlay_pngs``).

For 3D cases the slice (along the first axis) with the most foreground is shown (colours: ``nnlight.utils.overlays``).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib.image
import numpy as np
from tqdm import tqdm

from nnlight.raw.dataset import RawCase, open_raw_dataset
from nnlight.raw.io import read_images, read_seg
from nnlight.utils.errors import DatasetProblems, UserError, exit_on_user_error
from nnlight.utils.files import atomic_write
from nnlight.utils.overlays import overlay


def case_overlay(case: RawCase, kind: str, channel: int = 0) -> np.ndarray:
    """The case's overlay at the slice with the most foreground (2D cases: their only slice)."""
    images, _ = read_images(case.image_files, kind)
    labels = read_seg(case.label_file, kind)[0][0]
    if not 0 <= channel < len(images):
        raise UserError(f"--channel {channel}: {case.case_id} has channels 0..{len(images) - 1}")
    best = int(np.argmax((labels > 0).reshape(len(labels), -1).sum(1)))
    return overlay(images[channel, best], labels[best])


def plot_dataset_overlays(dataset_folder: Path, output: Path, channel: int = 0) -> list[Path]:
    """``<output>/<case>.png`` for every training case of a raw dataset; returns the files written."""
    dataset, problems = open_raw_dataset(dataset_folder)
    if dataset is None:
        raise DatasetProblems(dataset_folder.name, problems)
    written = []
    for case in tqdm(dataset.cases, desc="Overlays", unit="case"):
        buffer = io.BytesIO()
        matplotlib.image.imsave(buffer, case_overlay(case, dataset.reader, channel), format="png")
        path = output / f"{case.case_id}.png"
        output.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f, b=buffer: f.write(b.getvalue()))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a raw dataset folder (DatasetXXX_Name with imagesTr/labelsTr)")
    parser.add_argument("--output", type=Path, required=True, help="folder for <case>.png")
    parser.add_argument("--channel", type=int, default=0, help="image channel to show (default 0)")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        written = plot_dataset_overlays(args.dataset, args.output, args.channel)
    print(f"Wrote {len(written)} overlay(s) to {args.output}")


if __name__ == "__main__":
    main()
