"""``nnlight-plot-overlays``: one PNG per training case, the image with its labels drawn over it, to check a
dataset's labels by eye before planning (nnU-Net's ``nnUNetv2_plot_overlay_pngs``).

Every image channel is shown (or the one chosen), then the labels over the first one, with a colour legend; for 3D
cases the slice (along the first axis) with the most foreground (colours: ``nnlight.utils.overlays``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnlight.raw.dataset import RawCase, open_raw_dataset
from nnlight.raw.io import ImageFormat, read_images, read_seg
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.console_progress import progress
from nnlight.utils.errors import DatasetProblems, UserError, exit_on_user_error
from nnlight.utils.files import atomic_write_bytes, load_json
from nnlight.utils.overlays import comparison, titled_png


def case_overlay(case: RawCase, file_format: ImageFormat, channel_names: list[str], labels: dict[str, int],
                 channel: int | None = None) -> bytes:
    """The case's PNG at the slice with the most foreground (2D cases: their only slice): every image channel (or
    the one chosen), then the labels over the first (or chosen) channel, with a colour legend."""
    images, _ = read_images(case.image_files, file_format)
    label_map = read_seg(case.label_file, file_format)[0][0]
    if channel is not None and not 0 <= channel < len(images):
        raise UserError(f"channel={channel}: {case.case_id} has channels 0..{len(images) - 1}")
    best = int(np.argmax((label_map > 0).reshape(len(label_map), -1).sum(1)))
    shown = range(len(images)) if channel is None else [channel]
    grid = comparison([images[c] for c in shown], [label_map], [best])
    names = [channel_names[c] if c < len(channel_names) else f"channel {c}" for c in shown]
    title = f"{case.case_id}" + (f"   slice {best}" if len(label_map) > 1 else "")
    return titled_png(grid, title, (*names, "label"), {n: v for n, v in labels.items() if v > 0})


def plot_dataset_overlays(dataset_folder: Path, output: Path, channel: int | None = None) -> list[Path]:
    """``<output>/<case>.png`` for every training case of a raw dataset; returns the files written."""
    dataset, problems = open_raw_dataset(dataset_folder)
    if dataset is None:
        raise DatasetProblems(dataset_folder.name, problems)
    info = load_json(dataset_folder / "dataset.json")
    channel_names = [str(v) for _, v in sorted(info.get("channel_names", {}).items(), key=lambda kv: int(kv[0]))]
    labels = {str(k): int(v) for k, v in info.get("labels", {}).items() if isinstance(v, int)}
    written = []
    for case in progress(dataset.cases, desc="Overlays", unit="case"):
        png = case_overlay(case, dataset.image_format, channel_names, labels, channel)
        path = output / f"{case.case_id}.png"
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, png)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="nnlight-plot-overlays dataset=<raw dataset folder> output=<folder> "
                                           "[channel=<index>]")
    parser.add_argument("dataset", type=Path, help="a raw dataset folder (DatasetXXX_Name with imagesTr/labelsTr)")
    parser.add_argument("--output", type=Path, required=True, help="folder for <case>.png")
    parser.add_argument("--channel", type=int, default=None,
                        help="the one image channel to show (default: every channel, the labels over the first)")
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        written = plot_dataset_overlays(args.dataset, args.output, args.channel)
    print(f"Wrote {len(written)} overlay(s) to {args.output}")


if __name__ == "__main__":
    main()
