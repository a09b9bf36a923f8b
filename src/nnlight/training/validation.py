"""End-of-training validation: predict the fold's validation cases, export them, score them against the raw labels.

Cases are predicted from the case store (already preprocessed) with the sliding window, written in the
original geometry into ``validation/`` and compared with ``labelsTr`` of the raw dataset; ``summary.json``
holds per-case and mean Dice/IoU per label (nnU-Net's definitions), with HD95 and normalized surface Dice
unless ``surface_metrics=false``. Each scored case also gets a picture (image | label | prediction on a few slices,
with its Dice) in the run's ``validation_overlays/``. Finished cases are skipped on rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlight.data.cascade import one_hot_previous
from nnlight.data.datamodule import PreviousStage
from nnlight.evaluation.folder_evaluation import EvaluationSettings, score_case
from nnlight.evaluation.metrics import summarize
from nnlight.inference.export import (
    geometry_from_properties,
    scores_to_segmentation,
    write_probabilities,
    write_segmentation,
)
from nnlight.inference.predictor import InferenceSettings, export_scores, predict_preprocessed
from nnlight.preprocessing.resampling import resample_logits
from nnlight.preprocessing.store import load_arrays, load_case
from nnlight.raw.io import image_format, read_images, read_seg
from nnlight.raw.labels import label_key
from nnlight.utils.console_progress import progress
from nnlight.utils.files import atomic_write, atomic_write_bytes, atomic_write_json
from nnlight.utils.folders import PredictionFolder
from nnlight.utils.overlays import comparison, foreground_slices, mean_dice, titled_png


@dataclass(frozen=True)
class ValidationOptions:
    """The ``validation`` block of train.yaml: the end-of-training prediction of the fold's validation cases."""

    enabled: bool = True
    mirroring: bool = True  # test-time augmentation over the axes mirrored in training
    step_size: float = 0.5  # tile overlap: step = step_size x tile
    save_probabilities: bool = True  # validation/<case>.npz: what evaluate.py averages for ensembles
    surface_metrics: bool = True  # HD95 and normalized surface Dice besides Dice and IoU
    tolerance_mm: float = 1.0  # normalized surface Dice tolerance
    max_cases: int | None = None  # only the first N validation cases (the debug profiles' quick check: 1)
    overlays: bool = True  # validation_overlays/<case>.png: image channels | label | prediction with the case's Dice
    overlay_channel: int | None = None  # the one channel the overlays show (None: every channel, labels over the first)

    def __post_init__(self) -> None:
        if self.overlay_channel is not None and self.overlay_channel < 0:
            raise ValueError(f"overlay_channel={self.overlay_channel}: use a channel index (0, 1, ...) or null for all")
        if self.max_cases is not None and self.max_cases < 1:
            raise ValueError(f"max_cases={self.max_cases}: use a number of cases >= 1, or null for all")
        if not 0 < self.step_size <= 1:
            raise ValueError(f"step_size={self.step_size}: use a value in (0, 1], e.g. 0.5")
        if self.tolerance_mm <= 0:
            raise ValueError(f"tolerance_mm={self.tolerance_mm}: use a positive distance in mm, e.g. 1.0")


@dataclass(frozen=True)
class NextStage:
    """A low-res stage also writes each validation case's segmentation on the cascade's grid (nnU-Net's
    ``predicted_next_stage``): what the full-resolution stage trains on."""

    store: Path  # the cascade's case store (its grid)
    out_folder: Path  # <low-res model>/predicted_next_stage


@dataclass(frozen=True)
class ValidationSettings:
    store: Path  # <preprocessed>/<Dataset>/<data identifier>
    raw_labels: Path  # <raw>/<Dataset>/labelsTr
    scoring: EvaluationSettings  # labels, file ending, ignore label, surface metrics
    inference: InferenceSettings
    save_probabilities: bool = False  # <case>.npz beside each segmentation: what configuration ensembles average
    previous_stage: PreviousStage | None = None  # the cascade: low-res segmentations as extra input channels
    next_stage: NextStage | None = None
    overlays: Path | None = None  # <run>/validation_overlays: a picture per scored case
    channel_names: tuple[str, ...] = ()  # the image channels' names (dataset.json), the overlays' column names
    overlay_channel: int | None = None  # the one channel the overlays show (None: all, labels over channel 0)


def validate(network: torch.nn.Module, case_ids: Sequence[str], settings: ValidationSettings, out_folder: Path,
             device: torch.device) -> dict[str, Any]:
    out_folder.mkdir(parents=True, exist_ok=True)
    file_ending = settings.scoring.file_ending
    file_format = image_format(file_ending)
    network = network.to(device).eval()
    per_case = {}
    for case_id in progress(case_ids, desc="Validation", unit="case"):
        data, _, properties = load_case(settings.store, case_id)
        out = out_folder / f"{case_id}{file_ending}"
        next_stage_file = settings.next_stage.out_folder / f"{case_id}.npy" if settings.next_stage else None
        if out.is_file() and (next_stage_file is None or next_stage_file.is_file()):
            prediction, _ = read_seg(out, file_format)
            prediction = prediction[0]
        else:
            if settings.previous_stage is not None:
                previous = np.load(settings.previous_stage.folder / f"{case_id}.npy")
                data = np.concatenate([data, one_hot_previous(torch.from_numpy(previous[None]),
                                                              settings.previous_stage.labels)[0].numpy()])
            logits, are_probabilities = predict_preprocessed([network], data, settings.inference, device)
            if settings.next_stage is not None:
                _write_next_stage(logits, are_probabilities, settings, case_id, properties["target_spacing"])
            exported = export_scores(logits, are_probabilities, properties, settings.inference,
                                     settings.save_probabilities)
            if exported.probabilities is not None:  # first: a written segmentation means a finished case
                write_probabilities(out_folder / f"{case_id}.npz", exported.probabilities)
            prediction = exported.segmentation
            write_segmentation(prediction, out, geometry_from_properties(properties))
        reference_file = settings.raw_labels / f"{case_id}{file_ending}"
        if reference_file.is_file():
            reference, geometry = read_seg(reference_file, file_format)
            prediction = prediction.reshape(reference.shape[1:])
            per_case[case_id] = score_case(reference[0], prediction, geometry.spacing, settings.scoring)
            if settings.overlays is not None:
                _write_overlay(settings, case_id, reference[0], prediction, per_case[case_id])
    summary = summarize(per_case)
    atomic_write_json(PredictionFolder(out_folder).summary, summary)
    return summary


def _write_overlay(settings: ValidationSettings, case_id: str, reference: np.ndarray, prediction: np.ndarray,
                   metrics: dict[str, dict[str, float]]) -> None:
    """``<case>.png``: the raw image's channels (or the one chosen), the label and the prediction on up to three
    slices through the foreground (2D images: the image), titled with the case's Dice and a colour legend."""
    assert settings.overlays is not None
    ending = settings.scoring.file_ending
    files = sorted((settings.raw_labels.parent / "imagesTr").glob(f"{case_id}_[0-9][0-9][0-9][0-9]{ending}"))
    if not files:  # scored against labels whose images moved: nothing to draw on
        return
    images = read_images(files, image_format(ending))[0]
    names = list(settings.channel_names) or [f"channel {i}" for i in range(len(images))]
    shown = range(len(images)) if settings.overlay_channel is None else [settings.overlay_channel]
    grid = comparison([images[c] for c in shown], [reference, prediction], foreground_slices(reference, prediction))
    columns = (*(names[c] if c < len(names) else f"channel {c}" for c in shown), "label", "prediction")
    label_names = {label_key(value): name for name, value in settings.scoring.labels.items()}
    per_label = ", ".join(f"{label_names.get(label, label)} {m['Dice']:.2f}" for label, m in metrics.items())
    objects = next((m for m in metrics.values() if "SEG" in m), None)  # instance maps: the objects' scores too
    found = f"   SEG {objects['SEG']:.3f}, objects: {objects['n_pred_objects']} predicted, " \
        f"{objects['n_ref_objects']} in the label" if objects else ""
    legend = {name: int(value) for name, value in settings.scoring.labels.items()
              if isinstance(value, int) and value > 0}
    png = titled_png(grid, f"{case_id}   Dice {mean_dice(metrics):.3f}   (per label: {per_label}){found}", columns,
                     legend)
    settings.overlays.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(settings.overlays / f"{case_id}.png", png)


def _write_next_stage(scores: torch.Tensor, are_probabilities: bool, settings: ValidationSettings,
                      case_id: str, spacing: Sequence[float]) -> None:
    """The segmentation on the cascade's grid: scores resampled linearly to its shape (nnU-Net resamples
    with the low-res spacing on both sides, so only its anisotropy decides the separate-z rule), then arg-maxed."""
    assert settings.next_stage is not None
    target_shape = load_arrays(settings.next_stage.store, case_id)[0].shape[1:]
    resampled = resample_logits(scores, target_shape, spacing, spacing)
    segmentation = scores_to_segmentation(resampled, settings.inference.region_class_order, are_probabilities)
    values = segmentation.numpy()[None]
    settings.next_stage.out_folder.mkdir(parents=True, exist_ok=True)
    atomic_write(settings.next_stage.out_folder / f"{case_id}.npy",
                 lambda f: np.save(f, values.astype(np.int16 if values.max() > 127 else np.int8)))
