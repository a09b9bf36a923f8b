"""End-of-training validation: predict the fold's validation cases, export them, score them against the raw labels.

Cases are predicted from the case store (already preprocessed) with the sliding window, written in the
original geometry into ``validation/`` and compared with ``labelsTr`` of the raw dataset; ``summary.json``
holds per-case and mean Dice/IoU per label (nnU-Net's definitions), with HD95 and normalized surface Dice
unless ``surface_metrics=false``. Finished cases are skipped on rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nnlight.evaluation.folder import EvaluationSettings, score_case
from nnlight.evaluation.metrics import summarize
from nnlight.inference.export import geometry_from_properties, write_probabilities, write_segmentation
from nnlight.inference.predictor import InferenceSettings, export_scores, predict_preprocessed
from nnlight.preprocessing.store import load_case
from nnlight.raw.io import read_seg, reader_kind
from nnlight.utils.files import atomic_write_json
from nnlight.utils.folders import PredictionFolder


@dataclass(frozen=True)
class ValidationOptions:
    """The ``validation`` block of train.yaml: the end-of-training prediction of the fold's validation cases."""

    enabled: bool = True
    mirroring: bool = True  # test-time augmentation over the axes mirrored in training
    step_size: float = 0.5  # tile overlap: step = step_size x tile
    save_probabilities: bool = True  # validation/<case>.npz: what evaluate.py averages for ensembles
    surface_metrics: bool = True  # HD95 and normalized surface Dice besides Dice and IoU
    tolerance_mm: float = 1.0  # normalized surface Dice tolerance

    def __post_init__(self) -> None:
        if not 0 < self.step_size <= 1:
            raise ValueError(f"step_size={self.step_size}: use a value in (0, 1], e.g. 0.5")
        if self.tolerance_mm <= 0:
            raise ValueError(f"tolerance_mm={self.tolerance_mm}: use a positive distance in mm, e.g. 1.0")


@dataclass(frozen=True)
class ValidationSettings:
    store: Path  # <preprocessed>/<Dataset>/<data identifier>
    raw_labels: Path  # <raw>/<Dataset>/labelsTr
    scoring: EvaluationSettings  # labels, file ending, ignore label, surface metrics
    inference: InferenceSettings
    save_probabilities: bool = False  # <case>.npz beside each segmentation: what configuration ensembles average


def validate(network: torch.nn.Module, case_ids: Sequence[str], settings: ValidationSettings, out_folder: Path,
             device: torch.device) -> dict[str, Any]:
    out_folder.mkdir(parents=True, exist_ok=True)
    file_ending = settings.scoring.file_ending
    kind = reader_kind(file_ending)
    network = network.to(device).eval()
    per_case = {}
    for case_id in tqdm(case_ids, desc="Validation", unit="case"):
        data, _, properties = load_case(settings.store, case_id)
        out = out_folder / f"{case_id}{file_ending}"
        if out.is_file():
            prediction, _ = read_seg(out, kind)
            prediction = prediction[0]
        else:
            logits, are_probabilities = predict_preprocessed([network], data, settings.inference, device)
            exported = export_scores(logits, are_probabilities, properties, settings.inference,
                                     settings.save_probabilities)
            if exported.probabilities is not None:  # first: a written segmentation means a finished case
                write_probabilities(out_folder / f"{case_id}.npz", exported.probabilities)
            prediction = exported.segmentation
            write_segmentation(prediction, out, geometry_from_properties(properties))
        reference_file = settings.raw_labels / f"{case_id}{file_ending}"
        if reference_file.is_file():
            reference, geometry = read_seg(reference_file, kind)
            per_case[case_id] = score_case(reference[0], prediction.reshape(reference.shape[1:]), geometry.spacing,
                                           settings.scoring)
    summary = summarize(per_case)
    atomic_write_json(PredictionFolder(out_folder).summary, summary)
    return summary
