"""Predict a folder of images: every case once, written atomically, finished cases skipped on a rerun."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from nnlight.inference.export import write_probabilities, write_segmentation, written_completely
from nnlight.inference.postprocessing import PostprocessingRules, apply_postprocessing
from nnlight.inference.predictor import EnsemblePredictor, Predictor, Scores
from nnlight.preprocessing.case import PreprocessedCase
from nnlight.raw.dataset import group_channel_files
from nnlight.raw.dicom import ChannelRule, DicomSeries, cases_by_channel_rules, scan_dicom
from nnlight.raw.io import Geometry, image_format, read_images
from nnlight.utils.console_progress import progress
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, load_json
from nnlight.utils.folders import PredictionFolder
from nnlight.utils.locks import waiting_lock

T = TypeVar("T")


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
    cases, problems, case_problems = group_channel_files(folder, file_ending,
                                                         image_format(file_ending).files_per_case(num_channels))
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


@dataclass(frozen=True)
class AlsoWrite:
    """A further file per case made from its segmentation (``path(folder, case)``, ``write(case, segmentation,
    geometry, path)``)."""

    path: Callable[[Path, str], Path]
    write: Callable[[str, np.ndarray, Geometry, Path], None]


def dicom_cases(folder: Path, num_channels: int, rules: list[ChannelRule] | None = None
                ) -> tuple[dict[str, tuple[DicomSeries, ...]], dict[str, str]]:
    """The image series of a folder of DICOM files (any depth, any names) as cases, and those that cannot be one
    (case -> why: they go to ``failed.json`` and the others run); what is not an image to segment (segmentations,
    reports, localizers, other files) is listed and set aside. Without ``rules`` each series is a case (a
    one-channel model); with them each study is, its channels the series the rules choose."""
    if rules is None and num_channels != 1:
        raise UserError(f"{folder}: this model takes {num_channels} channels, and DICOM input needs a rule per "
                        "channel saying which series of a study it is: dicom_channels=[<rule>, ...], e.g. "
                        "dicom_channels=[t1,flair] on the series' descriptions (README: DICOM)")
    if rules is not None and len(rules) != num_channels:
        raise UserError(f"dicom_channels gives {len(rules)} rule(s), and this model takes {num_channels} "
                        "channel(s): give one rule per channel, in the model's channel order")
    scan = scan_dicom(folder)
    for what, why in scan.skipped.items():
        print(f"Set aside: {what}: {why}")
    if not scan.series and not scan.failed:
        raise UserError(f"{folder}: no DICOM image series found ({len(scan.skipped)} file(s) or series set aside)")
    if rules is None:
        return {s.case_id: (s,) for s in scan.series}, dict(scan.failed)
    cases, failed = cases_by_channel_rules(scan.series, rules)
    return cases, {**scan.failed, **failed}


def default_workers(predictor: Predictor | EnsemblePredictor) -> int:
    """Threads that read and export beside the network: none when it runs on the CPU (it already uses every core;
    a second stage beside it slowed 2 CPUs from 9.4 to 7.6 small images/s, BENCHMARKS.md), 3 each beside a GPU
    (nnU-Net's -npp/-nps)."""
    members = predictor.predictors if isinstance(predictor, EnsemblePredictor) else [predictor]
    return 0 if all(p.device.type == "cpu" for p in members) else 3


class _InThisThread(Executor):
    """An executor without threads: each task runs when submitted (``workers=0``)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to whoever asks for the result, as a thread pool would
            future.set_exception(e)
        return future


def _executor(workers: int) -> Executor:
    return ThreadPoolExecutor(max_workers=workers) if workers else _InThisThread()


@dataclass
class _Prepared:
    case_id: str
    geometry: Geometry
    cases: list[PreprocessedCase]  # one per member of the ensemble


def predict_folder(predictor: Predictor | EnsemblePredictor, cases: Mapping[str, tuple[Path, ...]],
                   output_folder: Path, file_ending: str, postprocessing: PostprocessingRules | None = None,
                   save_probabilities: bool = False, overwrite: bool = False,
                   before_first_write: Callable[[], None] | None = None,
                   failed_before: Mapping[str, str] | None = None, workers: int | None = None,
                   other_shards: Collection[str] = (),
                   read_case: Callable[[str], tuple[np.ndarray, Geometry]] | None = None,
                   also_write: AlsoWrite | None = None) -> FolderReport:
    """Segment every case (from :func:`input_cases`) into ``output_folder/<case><ending>`` (+ ``<case>.npz``).

    Cases smaller than a tile share forward passes (as many tiles as ``tile_batch``). With ``workers`` threads
    (default: :func:`default_workers`) reading and preprocessing run ahead of the network and export (resampling to
    the input grid, post-processing, writing) behind it, in bounded queues (at most ``2 x workers`` cases read
    ahead, ``workers`` exports in flight), so a folder of any size holds a few cases in memory. A case that cannot
    be read or is refused (unreadable, wrong channels, NaN voxels, a 2D image for a 3D model) is recorded with its
    error in ``failed.json`` and the others go on (``failed_before``: cases :func:`input_cases` already refused); a
    rerun tries them again; when no case could be predicted, nothing is written. ``before_first_write`` runs once,
    before the first file is written (predict.py records how the folder is made); a failed export (e.g. a full
    disk) stops the run after the cases before it are written. ``other_shards``: the input's cases that other jobs
    predict into the same folder (``shard=``): their entries in ``failed.json`` are theirs and stay. ``read_case``:
    how a case's image is read (default: its channel files in ``file_ending``'s format; DICOM: its series);
    ``also_write``: another file per case from its segmentation (a DICOM SEG), written before the segmentation file.
    """
    ensemble = predictor if isinstance(predictor, EnsemblePredictor) else EnsemblePredictor([predictor])
    workers = default_workers(ensemble) if workers is None else workers
    file_format = image_format(file_ending)
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
        written), merged with the other shards' failures; removed once no case fails."""
        if not started and (failed or not output_folder.is_dir()):
            return
        with waiting_lock(folder.failed_lock):
            earlier = load_json(folder.failed).get("failed", {}) if folder.failed.is_file() else {}
            merged = {**{c: why for c, why in earlier.items() if c in other_shards}, **failed}
            if merged:
                atomic_write_json(folder.failed, {"failed": merged, "cases": len(cases) + len(failed_before or {})
                                                  + len(other_shards)})
            elif folder.failed.is_file():
                folder.failed.unlink()

    def finished(case_id: str) -> bool:
        """Done in an earlier run: its files are complete (verified, not only present)."""
        files = [output_folder / f"{case_id}{file_ending}", *([output_folder / f"{case_id}.npz"]
                                                              if save_probabilities else []),
                 *([also_write.path(output_folder, case_id)] if also_write else [])]
        if all(written_completely(f) for f in files):
            return True
        if any(f.exists() for f in files):
            print(f"{case_id}: its earlier output is incomplete (an interrupted write or a full disk); predicting it "
                  "again")
        return False

    def load(case_id: str) -> _Prepared:
        if read_case is None:  # one file per channel
            images, geometry = read_images(cases[case_id], file_format)
            return _Prepared(case_id, geometry, ensemble.prepare(images, geometry, sources=cases[case_id]))
        images, geometry = read_case(case_id)  # e.g. a DICOM series: one channel from many files
        return _Prepared(case_id, geometry, ensemble.prepare(images, geometry, sources=[f"{case_id} (in "
                                                                                       f"{cases[case_id][0].parent})"]))

    def write(case: _Prepared, scores: list[Scores]) -> None:
        segmentation, probabilities = ensemble.export_files(case.cases, scores, save_probabilities)
        if postprocessing is not None:
            segmentation = apply_postprocessing(segmentation, postprocessing, ensemble.layout.foreground_values)
        if probabilities is not None:  # first, so a finished segmentation means a finished case
            write_probabilities(output_folder / f"{case.case_id}.npz", probabilities)
        if also_write is not None:
            try:
                also_write.write(case.case_id, segmentation, case.geometry, also_write.path(output_folder,
                                                                                            case.case_id))
            except UserError as e:  # e.g. a series no SEG can refer to: recorded; its segmentation still written
                failed[case.case_id] = str(e)
                print(f"{case.case_id}: {e}")
        write_segmentation(segmentation, output_folder / f"{case.case_id}{file_ending}", case.geometry)

    todo = [c for c in cases if overwrite or not finished(c)]
    skipped = [c for c in cases if c not in todo]
    predicted: list[str] = []
    with _executor(workers) as reader, _executor(workers) as writer, \
            progress(total=len(todo), desc="Predicting", unit="image") as bar:
        to_read = iter(todo)
        loading: deque[tuple[str, Future[_Prepared]]] = deque()
        exporting: deque[Future[None]] = deque()

        def next_case() -> _Prepared | None:
            """The next readable case in order (reading ahead up to the queue's bound); None when none is left."""
            while True:
                while len(loading) < max(2, 2 * workers) and (case_id := next(to_read, None)) is not None:
                    loading.append((case_id, reader.submit(load, case_id)))
                if not loading:
                    return None
                case_id, future = loading.popleft()
                try:
                    return future.result()
                except UserError as e:  # this image's problem: recorded, the others go on
                    failed[case_id] = str(e)
                    print(f"{case_id}: failed, the other images go on: {e}")
                    record_failures()
                    bar.update()

        def predict_group(group: list[_Prepared]) -> None:
            if not started:
                start_writing()
                record_failures()  # those before the first written case
            for case, scores in zip(group, ensemble.scores_many([c.cases for c in group]), strict=True):
                while len(exporting) > workers:  # bounded: the oldest export finishes (its error surfaces) first
                    exporting.popleft().result()
                exporting.append(writer.submit(write, case, scores))
                predicted.append(case.case_id)
            bar.update(len(group))

        group: list[_Prepared] = []
        while (case := next_case()) is not None:
            if group and not ensemble.fits_one_pass([c.cases for c in [*group, case]]):
                predict_group(group)
                group = []
            group.append(case)
        if group:
            predict_group(group)
        while exporting:
            exporting.popleft().result()
    record_failures()
    return FolderReport([c for c in predicted if c not in failed], skipped, output_folder, failed)
