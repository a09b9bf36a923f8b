"""Predict a folder of images: every case once, written atomically, finished cases skipped on a rerun."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from nnlight.inference.export import write_probabilities, write_segmentation, written_completely
from nnlight.inference.postprocessing import PostprocessingRules, apply_postprocessing
from nnlight.inference.predictor import EnsemblePredictor, Predictor, Scores
from nnlight.preprocessing.case import PreprocessedCase
from nnlight.raw.dataset import group_channel_files
from nnlight.raw.io import Geometry, read_images, reader_kind
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

    Three stages overlap: while the device predicts case i, one thread reads and preprocesses case i+1 and
    another exports case i-1 (resampling to the input grid, post-processing, writing). ``before_first_write``
    runs once the first case has been read, checked and predicted (predict.py records how the folder is made),
    so an input refused there leaves the output folder untouched; a case refused later stops the run after the
    cases before it are written.
    """
    ensemble = predictor if isinstance(predictor, EnsemblePredictor) else EnsemblePredictor([predictor])
    kind = reader_kind(file_ending)

    def finished(case_id: str) -> bool:
        """Done in an earlier run: its files are complete (verified, not only present)."""
        files = [output_folder / f"{case_id}{file_ending}", *([output_folder / f"{case_id}.npz"]
                                                              if save_probabilities else [])]
        if all(written_completely(f) for f in files):
            return True
        if any(f.exists() for f in files):
            print(f"{case_id}: its earlier output is incomplete (an interrupted write or a full disk); predicting it "
                  "again")
        return False

    def load(case_id: str) -> tuple[Geometry, list[PreprocessedCase]]:
        images, geometry = read_images(cases[case_id], kind)
        return geometry, ensemble.prepare(images, geometry, sources=cases[case_id])

    def write(case_id: str, geometry: Geometry, prepared: list[PreprocessedCase], scores: list[Scores]) -> None:
        prediction = ensemble.export(prepared, scores, save_probabilities)
        segmentation = prediction.segmentation
        if postprocessing is not None:
            segmentation = apply_postprocessing(segmentation, postprocessing, ensemble.layout.foreground_values)
        if prediction.probabilities is not None:  # first, so a finished segmentation means a finished case
            write_probabilities(output_folder / f"{case_id}.npz", prediction.probabilities)
        write_segmentation(segmentation, output_folder / f"{case_id}{file_ending}", geometry)

    todo = [c for c in cases if overwrite or not finished(c)]
    skipped = [c for c in cases if c not in todo]
    with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = reader.submit(load, todo[0]) if todo else None
        exporting: Future | None = None
        for i, case_id in enumerate(tqdm(todo, desc="Predicting", unit="case")):
            assert pending is not None
            geometry, prepared = pending.result()
            pending = reader.submit(load, todo[i + 1]) if i + 1 < len(todo) else None
            scores = ensemble.scores(prepared)
            if exporting is not None:
                exporting.result()  # one export at a time (memory), and its error surfaces here
            if i == 0:
                output_folder.mkdir(parents=True, exist_ok=True)
                if before_first_write is not None:
                    before_first_write()
            exporting = writer.submit(write, case_id, geometry, prepared, scores)
        if exporting is not None:
            exporting.result()
    return FolderReport(todo, skipped, output_folder)
