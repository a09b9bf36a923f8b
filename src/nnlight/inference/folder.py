"""Predict a folder of images: every case once, written atomically, finished cases skipped on a rerun."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnlight.inference.export import write_probabilities, write_segmentation, written_completely
from nnlight.inference.postprocessing import PostprocessingRules, apply_postprocessing
from nnlight.inference.predictor import EnsemblePredictor, Predictor, Scores
from nnlight.preprocessing.case import PreprocessedCase
from nnlight.raw.dataset import group_channel_files
from nnlight.raw.io import Geometry, read_images, reader_kind
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json
from nnlight.utils.folders import PredictionFolder


@dataclass
class FolderReport:
    predicted: list[str]
    skipped: list[str]  # already in the output folder from an earlier run
    output: Path
    failed: dict[str, str] = field(default_factory=dict)  # case -> why it could not be read or preprocessed


def input_cases(folder: Path, file_ending: str, num_channels: int
                ) -> tuple[dict[str, tuple[Path, ...]], dict[str, str]]:
    """``<case>_<XXXX><ending>`` files per case, checked against the model's channels before anything runs; a case
    with a missing or extra channel file comes back as failed (case -> why), so the others still run. A file
    that names no case, or a folder with no usable case, is refused."""
    if not folder.is_dir():
        raise UserError(f"{folder}: input folder not found")
    kind = reader_kind(file_ending)
    cases, problems, case_problems = group_channel_files(folder, file_ending,
                                                         None if kind == "natural2d" else num_channels)
    if problems:
        problems = [p.replace("dataset.json's file_ending", "the model's file ending") for p in problems]
        raise UserError(f"{folder}: {len(problems)} problem(s) with the input images:\n  - " + "\n  - ".join(problems))
    failed = {case: "; ".join(p.replace("declared in dataset.json", "the model takes") for p in found)
              for case, found in case_problems.items()}
    usable = {case: files for case, files in cases.items() if files}
    if not usable:
        raise UserError(f"{folder}: no usable images ending in {file_ending}; name them <case>_0000{file_ending}"
                        + (f" ({len(failed)} case(s) with channel problems: {next(iter(failed.values()))})"
                           if failed else ""))
    return usable, failed


def predict_folder(predictor: Predictor | EnsemblePredictor, cases: Mapping[str, tuple[Path, ...]],
                   output_folder: Path, file_ending: str, postprocessing: PostprocessingRules | None = None,
                   save_probabilities: bool = False, overwrite: bool = False,
                   before_first_write: Callable[[], None] | None = None,
                   failed_before: Mapping[str, str] | None = None) -> FolderReport:
    """Segment every case (from :func:`input_cases`) into ``output_folder/<case><ending>`` (+ ``<case>.npz``).

    Three stages overlap: while the device predicts case i, one thread reads and preprocesses case i+1 and
    another exports case i-1 (resampling to the input grid, post-processing, writing). A case that cannot be read
    or is refused (unreadable, wrong channels, NaN voxels, a 2D image for a 3D model) is recorded with its error in
    ``failed.json`` and the others go on (``failed_before``: cases :func:`input_cases` already refused); a rerun
    tries them again; when no case could be predicted, nothing is written. ``before_first_write`` runs once, before
    the first file is written (predict.py records how the folder is made); a failed export (e.g. a full disk) stops
    the run after the cases before it are written.
    """
    ensemble = predictor if isinstance(predictor, EnsemblePredictor) else EnsemblePredictor([predictor])
    kind = reader_kind(file_ending)
    folder = PredictionFolder(output_folder)
    failed = dict(failed_before or {})
    started = False

    def start_writing() -> None:
        nonlocal started
        output_folder.mkdir(parents=True, exist_ok=True)
        if before_first_write is not None:
            before_first_write()
        started = True

    def record_failures() -> None:
        """``failed.json`` beside the predictions (none written yet: the caller reports the failures, nothing is
        written); removed once no case fails."""
        if failed and started:
            atomic_write_json(folder.failed, {"failed": failed, "cases": len(cases) + len(failed_before or {})})
        elif not failed and folder.failed.is_file():
            folder.failed.unlink()

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
    predicted = []
    with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = reader.submit(load, todo[0]) if todo else None
        exporting: Future | None = None
        for i, case_id in enumerate(tqdm(todo, desc="Predicting", unit="image")):
            assert pending is not None
            try:
                geometry, prepared = pending.result()
            except UserError as e:  # this image's problem: recorded, the others go on
                failed[case_id] = str(e)
                print(f"{case_id}: failed, the other images go on: {e}")
                record_failures()
                continue
            finally:
                pending = reader.submit(load, todo[i + 1]) if i + 1 < len(todo) else None
            scores = ensemble.scores(prepared)
            if exporting is not None:
                exporting.result()  # one export at a time (memory), and its error surfaces here
            if not started:
                start_writing()
                record_failures()  # those before the first written case
            exporting = writer.submit(write, case_id, geometry, prepared, scores)
            predicted.append(case_id)
        if exporting is not None:
            exporting.result()
    record_failures()
    return FolderReport(predicted, skipped, output_folder, failed)
