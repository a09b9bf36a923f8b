"""Predict a folder of images: every case once, written atomically, finished cases skipped on a rerun."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from nnlight.evaluation.postprocessing import PostprocessingRules, apply_postprocessing
from nnlight.inference.export import write_probabilities, write_segmentation
from nnlight.inference.predictor import EnsemblePredictor, Predictor
from nnlight.raw.dataset import group_channel_files
from nnlight.raw.io import read_images, reader_kind
from nnlight.utils.errors import UserError


@dataclass
class FolderReport:
    predicted: list[str]
    skipped: list[str]  # already in the output folder from an earlier run
    output: Path


def input_cases(folder: Path, file_ending: str, num_channels: int) -> dict[str, tuple[Path, ...]]:
    """``<case>_<XXXX><ending>`` files per case, checked against the model's channels before anything runs."""
    if not folder.is_dir():
        raise UserError(f"{folder}: input folder not found")
    kind = reader_kind(file_ending)
    cases, problems = group_channel_files(folder, file_ending, None if kind == "natural2d" else num_channels)
    problems = [p.replace("dataset.json's file_ending", "the model's file ending") for p in problems]
    if problems:
        raise UserError(f"{folder}: {len(problems)} problem(s) with the input images:\n  - " + "\n  - ".join(problems))
    if not cases:
        raise UserError(f"{folder}: no images ending in {file_ending}; name them <case>_0000{file_ending}")
    return cases


def predict_folder(predictor: Predictor | EnsemblePredictor, cases: Mapping[str, tuple[Path, ...]],
                   output_folder: Path, file_ending: str, postprocessing: PostprocessingRules | None = None,
                   save_probabilities: bool = False, overwrite: bool = False,
                   before_first_write: Callable[[], None] | None = None) -> FolderReport:
    """Segment every case (from :func:`input_cases`) into ``output_folder/<case><ending>`` (+ ``<case>.npz``).

    Reading and preprocessing the next case overlaps with predicting the current one. ``before_first_write``
    runs once the first case has been read, checked and predicted (predict.py records how the folder is made),
    so an input refused there leaves the output folder untouched.
    """
    kind = reader_kind(file_ending)

    def finished(case_id: str) -> bool:
        return (output_folder / f"{case_id}{file_ending}").is_file() and \
            (not save_probabilities or (output_folder / f"{case_id}.npz").is_file())

    todo = [c for c in cases if overwrite or not finished(c)]
    skipped = [c for c in cases if c not in todo]
    foreground = predictor.layout.foreground_values
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending: Future | None = reader.submit(read_images, cases[todo[0]], kind) if todo else None
        for i, case_id in enumerate(tqdm(todo, desc="Predicting", unit="case")):
            assert pending is not None
            images, geometry = pending.result()
            pending = reader.submit(read_images, cases[todo[i + 1]], kind) if i + 1 < len(todo) else None
            prediction = predictor.predict(images, geometry, save_probabilities, sources=cases[case_id])
            if i == 0:
                output_folder.mkdir(parents=True, exist_ok=True)
                if before_first_write is not None:
                    before_first_write()
            segmentation = prediction.segmentation
            if postprocessing is not None:
                segmentation = apply_postprocessing(segmentation, postprocessing, foreground)
            if prediction.probabilities is not None:  # first, so a finished segmentation means a finished case
                write_probabilities(output_folder / f"{case_id}.npz", prediction.probabilities)
            write_segmentation(segmentation, output_folder / f"{case_id}{file_ending}", geometry)
    return FolderReport(todo, skipped, output_folder)
