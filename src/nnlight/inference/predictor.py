"""A trained model (one or several folds of one configuration) that segments images.

Built from run folders only: the network from the saved plan (``plan.json``) and network choice
(``inference.json``) and the checkpoint's weights (``weights_only=True``); a network class named on disk is
imported only from nnlight, MONAI or a module the user trusts (``trusted_networks``). Images go through the same pure
preprocessing functions as training, the sliding window with Gaussian weighting and mirroring TTA, the fold
ensemble (averaged probabilities) and the export back to the input's exact grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nnlight.data.cascade import one_hot_previous
from nnlight.inference.export import (
    ClassChunks,
    input_spacing,
    mean_probabilities,
    probabilities,
    probabilities_in_original_space,
    probability_chunks,
    segmentation_from_probabilities,
    segmentation_in_original_space,
)
from nnlight.inference.model_plan import check_model_plan
from nnlight.inference.sliding_window import sliding_window_predict_many, tile_count
from nnlight.model.network import PLAN_UNET, NetworkChoice, inference_network, plan_unet
from nnlight.model.weights import run_network_weights
from nnlight.planning.facts import DatasetFacts
from nnlight.preprocessing.case import PreprocessedCase, PreprocessingSettings, preprocess_case
from nnlight.raw.instances import InstancePlan
from nnlight.raw.io import Geometry, check_finite
from nnlight.raw.labels import LabelLayout
from nnlight.utils.errors import UserError
from nnlight.utils.files import load_json
from nnlight.utils.folders import CheckpointName, ModelFolder, RunFolder

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"32": None, "16-mixed": torch.float16,
                                                  "bf16-mixed": torch.bfloat16}
# Lightning's other names for a precision, as the autocast they amount to at inference
_PRECISION_ALIASES = {"16": "16-mixed", "16-true": "16-mixed", "bf16": "bf16-mixed", "bf16-true": "bf16-mixed",
                      "32-true": "32", "64": "32", "64-true": "32"}
MAX_TILE_BATCH = 8  # beyond this a GPU gains nothing measurable and the memory estimate gets riskier
TILE_MEMORY_SHARE = 0.5  # of the free GPU memory the tiles of one forward pass may take


def canonical_precision(name: str | int) -> str:
    """One of ``AUTOCAST_DTYPES``' names for any Lightning precision (``16`` → ``16-mixed``); an unknown name is an
    error naming the valid ones."""
    canonical = _PRECISION_ALIASES.get(str(name), str(name))
    if canonical not in AUTOCAST_DTYPES:
        raise UserError(f"precision={name}: choose one of {', '.join(AUTOCAST_DTYPES)} (Lightning's aliases "
                        f"{', '.join(_PRECISION_ALIASES)} are accepted too)")
    return canonical


def inference_precision(requested: str, training_precision: str | None, device: torch.device) -> str:
    """``auto``: on a GPU the precision the model was trained in (16-mixed if not recorded: nnU-Net's), on the
    CPU float32 as nnU-Net (bf16-mixed is faster only on CPUs with bf16 instructions: 1.9x on an AVX512-BF16
    EPYC, BENCHMARKS.md). Anything else is taken as asked."""
    if requested != "auto":
        return canonical_precision(requested)
    if device.type != "cuda":
        return "32"
    return canonical_precision(training_precision or "16-mixed")


def choose_tile_batch(network: torch.nn.Module, channels: int, settings: InferenceSettings,
                      device: torch.device) -> int:
    """How many tiles to push through the network at once: 1 on the CPU; on a GPU as many as half the free
    memory holds, from the peak memory of one measured forward pass (at most ``MAX_TILE_BATCH``)."""
    if device.type != "cuda":
        return 1
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    dtype = AUTOCAST_DTYPES[settings.precision]
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        network(torch.zeros((1, channels, *settings.tile_size), device=device))
    per_tile = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_TILE_BATCH, int(free * TILE_MEMORY_SHARE // per_tile)))


ScoresDtype = Literal["float32", "float16", "bfloat16"]
SCORES_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class InferenceSettings:
    """How a preprocessed image becomes class scores."""

    tile_size: list[int]
    num_outputs: int
    transpose_backward: list[int]
    region_class_order: list[int] | None = None  # region-based models: the label each region paints, in order
    mirror_axes: tuple[int, ...] = ()
    step_size: float = 0.5
    tile_batch: int = 1  # tiles per forward pass (:func:`with_tile_batch` chooses it from free memory)
    precision: str = "32"  # 32 | 16-mixed | bf16-mixed (autocast)
    scores_dtype: ScoresDtype = "float32"  # what the sliding window holds scores in
    instances: InstancePlan | None = None  # an instance model: border-core labels become objects on export

    def __post_init__(self) -> None:
        canonical_precision(self.precision)
        if self.scores_dtype not in SCORES_DTYPES:
            raise ValueError(f"scores_dtype={self.scores_dtype}: choose {', '.join(SCORES_DTYPES)}")


Scores = tuple[torch.Tensor, bool]  # class scores of a preprocessed case, and whether they are probabilities


@dataclass
class Prediction:
    segmentation: np.ndarray  # (z, y, x) int16 on the input's grid (an instance model: uint16/uint32 object ids)
    probabilities: np.ndarray | None  # (classes, z, y, x) float16 on the input's grid, when asked for


def predict_preprocessed(networks: Sequence[torch.nn.Module], image: np.ndarray | torch.Tensor,
                         settings: InferenceSettings, device: torch.device) -> Scores:
    """Scores ``(outputs, *spatial)`` on the CPU for a preprocessed image, and whether they are probabilities.

    One network gives logits (exported as nnU-Net does); several are an ensemble whose probabilities are
    averaged. On a GPU the image and accumulator live on the device; if they do not fit, the accumulator
    falls back to the CPU while the tiles still run on the GPU.
    """
    return predict_preprocessed_many(networks, [image], settings, device)[0]


def predict_preprocessed_many(networks: Sequence[torch.nn.Module], images: Sequence[np.ndarray | torch.Tensor],
                              settings: InferenceSettings, device: torch.device) -> list[Scores]:
    """:func:`predict_preprocessed` for several images whose tiles share forward passes (small images)."""
    tensors = [torch.from_numpy(np.array(image, dtype=np.float32)) for image in images]  # writable copies (the
    # store hands out memory maps)
    totals: list[torch.Tensor] = []
    for network in networks:
        try:
            scores = _sliding_window(network, [t.to(device) for t in tensors], settings, device)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            scores = _sliding_window(network, tensors, settings, device)
        for i, case_scores in enumerate(scores):
            case_scores = case_scores.cpu()
            if len(networks) > 1:
                case_scores = probabilities(case_scores, settings.region_class_order is not None)
            if i < len(totals):
                totals[i] += case_scores
            else:
                totals.append(case_scores)
    assert totals, "no network to predict with"
    for total in totals:  # in place: a copy of a many-class image's scores would double the peak memory
        total /= len(networks)
    return [(total, len(networks) > 1) for total in totals]


def export_scores(scores: torch.Tensor, are_probabilities: bool, properties: Mapping[str, Any],
                  settings: InferenceSettings, with_probabilities: bool) -> Prediction:
    """Scores of a preprocessed case back on the input's grid: the segmentation (+ the probabilities)."""
    segmentation = segmentation_in_original_space(scores, properties, settings.transpose_backward,
                                                  settings.region_class_order, are_probabilities, settings.instances)
    if not with_probabilities:
        return Prediction(segmentation, None)
    region_based = settings.region_class_order is not None
    probs = scores if are_probabilities else probabilities(scores, region_based)
    return Prediction(segmentation, probabilities_in_original_space(probs, properties, settings.transpose_backward,
                                                                    region_based))


def exported_probability_chunks(scores: torch.Tensor, are_probabilities: bool, properties: Mapping[str, Any],
                                settings: InferenceSettings) -> ClassChunks:
    """The probabilities of :func:`export_scores`, made a few classes at a time as they are written."""
    region_based = settings.region_class_order is not None
    probs = scores if are_probabilities else probabilities(scores, region_based)
    return probability_chunks(probs, properties, settings.transpose_backward, region_based)


def _sliding_window(network: torch.nn.Module, images: Sequence[torch.Tensor], settings: InferenceSettings,
                    device: torch.device) -> list[torch.Tensor]:
    return sliding_window_predict_many(network, images, settings.tile_size, settings.num_outputs, settings.step_size,
                                  mirror_axes=settings.mirror_axes, tile_batch=settings.tile_batch,
                                  network_device=device, autocast_dtype=AUTOCAST_DTYPES[settings.precision],
                                  scores_dtype=SCORES_DTYPES[settings.scores_dtype])


def resolve_device(name: str) -> torch.device:
    """``auto`` = the GPU when there is one, else the CPU (which then uses every core)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: no CUDA GPU on this machine; use device=cpu or device=auto")
    return torch.device(name)


def find_runs(model_folder: Path, folds: Sequence[int | str] | None = None) -> list[RunFolder]:
    """A run folder (``fold_<k>``) itself, or the chosen/all ``fold_*`` folders of a configuration folder."""
    model_folder = Path(model_folder)
    if RunFolder(model_folder).is_trained_run():
        return [RunFolder(model_folder)]
    model = ModelFolder(model_folder)
    available = model.runs()
    if folds is not None:
        wanted = [model.fold(f) for f in folds]
        missing = [r for r in wanted if r not in available]
        if missing:
            raise UserError(f"{missing[0].path}: fold not trained (available: "
                            f"{[r.path.name for r in available] or 'none'}); train it or choose folds=[...] from "
                            "the available ones")
        return wanted
    if not available:
        raise UserError(f"{model_folder}: no trained model here; point model= at a run folder (.../fold_0) or at "
                        "its configuration folder (.../<experiment>) holding fold_* run folders")
    return available


def run_plan(run: RunFolder) -> dict[str, Any]:
    """A trained fold's ``plan.json``, checked like any plan from a file."""
    plan = load_json(run.plan)
    check_model_plan(plan, str(run.plan))
    return plan


@dataclass(frozen=True)
class TrainingChoices:
    """What train.py chose that inference must repeat: the run folder's ``inference.json``."""

    tile_size: list[int]  # the training patch (data.patch_size, or the network's adapted one)
    mirror_axes: tuple[int, ...]  # network-input axes mirrored in training (test-time mirroring uses only these)
    network: NetworkChoice | None  # None: an exported network (ONNX) that needs no class to be built
    precision: str | None = field(default=None, compare=False)  # the training precision (folds may differ)
    previous_stage: str | None = None  # the cascade: its low-res model, <configuration>/<experiment>
    network_record: dict[str, Any] = field(default_factory=dict, compare=False)  # outputs, parameters, adapted patch

    @property
    def network_choice(self) -> NetworkChoice:
        """The network class and arguments (a model trained by nnlight or nnU-Net; an ONNX export has none)."""
        if self.network is None:
            raise UserError("an exported ONNX model has no network class to build; use its ONNX files")
        return self.network

    def to_json(self) -> dict[str, Any]:
        return {"tile_size": list(self.tile_size), "mirror_axes": list(self.mirror_axes),
                "network": {**self.network_record, **self.network_choice.to_json()}, "precision": self.precision,
                "previous_stage": self.previous_stage}

    @classmethod
    def load(cls, run: RunFolder, plan: Mapping[str, Any], trusted_networks: Sequence[str] = ()) -> TrainingChoices:
        if not run.inference.is_file():
            raise UserError(f"{run.inference}: not found; a run folder written by nnlight-train has it (train the fold "
                            "again)")
        data = load_json(run.inference)
        try:  # files from before tile_size/network were recorded: those runs used the plan's patch, instance norm
            network = data.get("network", {})
            if "target" not in network:  # written before the network group had _target_: the plan's U-Net
                network = plan_unet(**network).to_json()
            return cls([int(t) for t in data.get("tile_size", plan["patch_size"])],
                       tuple(int(a) for a in data["mirror_axes"]),
                       NetworkChoice.from_json(network, str(run.inference), trusted_networks),
                       data.get("precision"), data.get("previous_stage"),
                       {k: v for k, v in network.items() if k not in NetworkChoice.__dataclass_fields__})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{run.inference}: malformed ({e!r}); train the fold again") from None


def recorded_networks(model_folders: Iterable[Path]) -> list[str]:
    """The network class each trained fold of these configuration folders names in its ``inference.json`` (read,
    not imported): what a command printed for them must trust."""
    targets = []
    for folder in model_folders:
        for run in ModelFolder(folder).runs():
            if run.inference.is_file():
                targets.append(str(load_json(run.inference).get("network", {}).get("target", PLAN_UNET)))
    return targets


def load_run_network(run: RunFolder, plan: Mapping[str, Any], choices: TrainingChoices,
                     checkpoint: CheckpointName) -> torch.nn.Module:
    """One trained fold's network, ready to predict."""
    return inference_network(choices.network_choice, plan, choices.tile_size, run_network_weights(run, checkpoint),
                             str(run.checkpoint(checkpoint)))


def preprocessing_settings_from_plan(plan: Mapping[str, Any]) -> PreprocessingSettings:
    data = plan["resampling"]["data"]
    return PreprocessingSettings(
        transpose_forward=list(plan["transpose_forward"]), target_spacing=list(plan["spacing"]),
        normalization_schemes=list(plan["normalization_schemes"]), use_mask_for_norm=list(plan["use_mask_for_norm"]),
        intensity_properties=plan["foreground_intensity_properties_per_channel"],
        force_separate_z=data.get("force_separate_z"), order_data=int(data.get("order", 3)),
        order_z_data=int(data.get("order_z", 0)))


def inference_settings(plan: Mapping[str, Any], layout: LabelLayout, tile_size: Sequence[int],
                       mirror_axes: Sequence[int], step_size: float, precision: str = "32") -> InferenceSettings:
    """How a model of this plan turns a preprocessed image into scores (validation and prediction alike)."""
    return InferenceSettings(
        tile_size=list(tile_size), num_outputs=layout.num_outputs, transpose_backward=list(plan["transpose_backward"]),
        region_class_order=list(layout.regions_class_order or ()) if layout.has_regions else None,
        mirror_axes=tuple(a for a in mirror_axes if a < len(tile_size)), step_size=step_size, precision=precision,
        instances=InstancePlan.from_mapping(plan["instances"]) if plan.get("instances") else None)


def with_tile_batch(settings: InferenceSettings, network: torch.nn.Module, channels: int, device: torch.device,
                    tile_batch: int = 0) -> InferenceSettings:
    """``settings`` with the tile batch fixed: ``tile_batch``, or (0) chosen for this network and device."""
    return replace(settings, tile_batch=tile_batch or choose_tile_batch(network, channels, settings, device))


class Predictor:
    """Segments images with one or several folds of one trained configuration."""

    inference: InferenceSettings  # how scores are made (a cascade's low-res stage has its instances turned off)

    def __init__(self, networks: Sequence[torch.nn.Module], plan: Mapping[str, Any], choices: TrainingChoices,
                 mirroring: bool = True, step_size: float = 0.5, device: torch.device | None = None,
                 model_folders: Sequence[Path] = (), precision: str = "auto", tile_batch: int = 0,
                 previous_stage: Predictor | None = None, scores_dtype: ScoresDtype = "float32") -> None:
        """``precision``: 32 | 16-mixed | bf16-mixed | auto (:func:`inference_precision`); ``scores_dtype``: what
        the sliding window sums class scores in (float32 | float16 | bfloat16: half the memory); ``tile_batch``: tiles
        per forward pass, 0 = chosen from the free memory (:func:`choose_tile_batch`); ``previous_stage`` (the
        cascade): the low-res model whose segmentation of each image becomes extra input channels."""
        self.plan = dict(plan)
        self.facts = DatasetFacts.from_plan(plan)
        self.layout = self.facts.layout
        self.device = device or resolve_device("auto")
        self.networks = [n.to(self.device) for n in networks]
        self.model_folders = list(model_folders)
        self.previous_stage = previous_stage
        if (previous_stage is not None) != bool(self.facts.previous_stage):
            raise UserError(f"{self.facts.dataset}/{self.facts.configuration}: a cascade stage needs its low-res "
                            "model to predict, and only a cascade stage takes one")
        if previous_stage is not None:  # its labels are input channels: border-core labels, not objects
            previous_stage.inference = replace(previous_stage.inference, instances=None)
        self.preprocessing = preprocessing_settings_from_plan(plan)
        settings = replace(inference_settings(plan, self.layout, choices.tile_size,
                                              choices.mirror_axes if mirroring else (), step_size,
                                              inference_precision(precision, choices.precision, self.device)),
                           scores_dtype=scores_dtype)
        self.inference = with_tile_batch(settings, self.networks[0], self.facts.network_input_channels, self.device,
                                         tile_batch)

    @classmethod
    def from_model_folder(cls, model_folder: str | Path, folds: Sequence[int | str] | None = None,
                          checkpoint: CheckpointName = "final", mirroring: bool = True, step_size: float = 0.5,
                          device: str = "auto", precision: str = "auto", tile_batch: int = 0,
                          trusted_networks: Sequence[str] = (), scores_dtype: ScoresDtype = "float32") -> Predictor:
        """A run folder (one fold) or a configuration folder (its ``fold_*``, all by default, or ``folds``).
        ``trusted_networks``: modules besides nnlight's and MONAI's whose network classes a run may name."""
        runs = find_runs(Path(model_folder), folds)
        plan = run_plan(runs[0])
        choices = TrainingChoices.load(runs[0], plan, trusted_networks)
        for run in runs[1:]:
            other = run_plan(run)
            if other["architecture"] != plan["architecture"] or other["spacing"] != plan["spacing"] or \
                    TrainingChoices.load(run, other, trusted_networks) != choices:
                raise UserError(f"{run.path}: trained with a different plan or network than {runs[0].path}; an "
                                "ensemble needs one")
        networks = [load_run_network(run, plan, choices, checkpoint) for run in runs]
        previous = None
        if choices.previous_stage:  # <results>/<Dataset>/<configuration>/<experiment>/fold_k -> <results>/<Dataset>
            low_res = runs[0].path.parents[2] / choices.previous_stage
            if not low_res.is_dir():
                raise UserError(f"{low_res}: the low-res model of the cascade {runs[0].path.parent} is missing; it "
                                "predicts first (a model file made by nnlight-model export includes it)")
            previous = cls.from_model_folder(low_res, None, checkpoint, mirroring, step_size, device, precision,
                                             tile_batch, trusted_networks, scores_dtype)
        return cls(networks, plan, choices, mirroring, step_size, resolve_device(device), [r.path for r in runs],
                   precision, tile_batch, previous, scores_dtype)

    @property
    def num_channels(self) -> int:
        return len(self.plan["channel_names"])

    @property
    def is_3d(self) -> bool:
        return len(self.inference.tile_size) == 3

    def predict(self, images: np.ndarray, geometry: Geometry | Sequence[float], save_probabilities: bool = False,
                sources: Sequence[str | Path] | None = None) -> Prediction:
        """Segment one image ``(channels, z, y, x)`` (2D: ``(channels, 1, y, x)``) given its spacing (z, y, x).

        The segmentation has the image's shape (z, y, x); to write it as a file with the input's geometry use
        :func:`nnlight.inference.export.write_segmentation`. ``sources`` (the channel files) name the culprit
        when the image is refused.
        """
        images = check_input(images, geometry, self, sources)
        return self._segment(images, geometry, save_probabilities)

    def _segment(self, images: np.ndarray, geometry: Geometry | Sequence[float],
                 save_probabilities: bool) -> Prediction:
        case = self.prepare(images, geometry)
        return self.export(case, self.scores(case), save_probabilities)

    def prepare(self, images: np.ndarray, geometry: Geometry | Sequence[float]) -> PreprocessedCase:
        """The checked image preprocessed as in training (crop, normalize, resample to the plan's spacing). A
        cascade stage first segments it with its low-res model; that segmentation, preprocessed as labels are,
        becomes one-hot input channels (nnU-Net's ``-prev_stage_predictions``)."""
        spacing = geometry.spacing if isinstance(geometry, Geometry) else tuple(float(s) for s in geometry)
        if self.previous_stage is None:
            return preprocess_case(images, None, spacing, self.preprocessing)
        low_res = self.previous_stage.predict(images, geometry).segmentation
        case = preprocess_case(images, low_res[None], spacing, self.preprocessing)
        assert case.seg is not None
        channels = one_hot_previous(torch.from_numpy(case.seg[None].astype(np.int16)), self.facts.previous_stage_labels)
        return replace(case, data=np.concatenate([case.data, channels[0].numpy()]), seg=None)

    def scores(self, case: PreprocessedCase) -> Scores:
        """The sliding window of every fold on the device: scores on the CPU, and whether they are probabilities."""
        return predict_preprocessed(self.networks, case.data, self.inference, self.device)

    def scores_many(self, cases: Sequence[PreprocessedCase]) -> list[Scores]:
        """:meth:`scores` of several cases, their tiles sharing forward passes (``tile_batch`` tiles each)."""
        return predict_preprocessed_many(self.networks, [c.data for c in cases], self.inference, self.device)

    def tiles(self, case: PreprocessedCase) -> int:
        """How many tiles the sliding window runs over this case (per network and mirroring)."""
        return tile_count(case.data.shape[1:], self.inference.tile_size, self.inference.step_size)

    def export(self, case: PreprocessedCase, scores: Scores, with_probabilities: bool) -> Prediction:
        return export_scores(*scores, case.properties, self.inference, with_probabilities)


def check_input(images: np.ndarray, geometry: Geometry | Sequence[float], model: Predictor | EnsemblePredictor,
                sources: Sequence[str | Path] | None = None) -> np.ndarray:
    """The image as float32, refused where it would be predicted wrongly without a word: the wrong number of
    channels, NaN/Inf voxels, a 2D image given to a 3D model. ``sources`` name the files in the message."""
    images = np.asarray(images, dtype=np.float32)
    names = list(sources) if sources is not None else [f"channel {c}" for c in range(len(images))]
    if images.ndim != 4 or images.shape[0] != model.num_channels:
        raise UserError(f"{names[0]}: the image has shape {images.shape} but the model expects (channels="
                        f"{model.num_channels} {model.plan['channel_names']}, z, y, x); 2D images are "
                        "(channels, 1, y, x)")
    nonfinite = check_finite(images, names)
    if nonfinite:
        raise UserError(nonfinite)
    is_2d = geometry.is_2d if isinstance(geometry, Geometry) else images.shape[1] == 1
    if is_2d and model.is_3d:
        raise UserError(f"{names[0]}: a 2D image, but the model is a 3D configuration; predict 2D images with a "
                        "2d model (plan=<Dataset>/2d)")
    return images


class EnsemblePredictor:
    """Several trained configurations (e.g. 2d + 3d_fullres): each predicts on its own grid, probabilities
    are averaged on the input's grid (nnU-Net's configuration ensembling)."""

    def __init__(self, predictors: Sequence[Predictor]) -> None:
        if len({p.num_channels for p in predictors}) != 1:
            raise UserError("the ensemble's models expect different numbers of input channels")
        self.predictors = list(predictors)
        self.plan = predictors[0].plan
        self.layout = predictors[0].layout
        self.is_3d = any(p.is_3d for p in predictors)

    @property
    def num_channels(self) -> int:
        return self.predictors[0].num_channels

    def predict(self, images: np.ndarray, geometry: Geometry | Sequence[float], save_probabilities: bool = False,
                sources: Sequence[str | Path] | None = None) -> Prediction:
        cases = self.prepare(images, geometry, sources)
        return self.export(cases, self.scores(cases), save_probabilities)

    # The three steps apart, so that a folder's cases can overlap them: the next case is read and preprocessed
    # and the previous one exported while the device predicts the current one (inference/folder.py).
    def prepare(self, images: np.ndarray, geometry: Geometry | Sequence[float],
                sources: Sequence[str | Path] | None = None) -> list[PreprocessedCase]:
        """The image checked once, then preprocessed for each member (their plans may differ)."""
        images = check_input(images, geometry, self, sources)
        return [p.prepare(images, geometry) for p in self.predictors]

    def scores(self, cases: Sequence[PreprocessedCase]) -> list[Scores]:
        return [p.scores(c) for p, c in zip(self.predictors, cases, strict=True)]

    def scores_many(self, images: Sequence[Sequence[PreprocessedCase]]) -> list[list[Scores]]:
        """:meth:`scores` of several images (each: one preprocessed case per member) whose tiles share passes."""
        per_member = [p.scores_many([cases[m] for cases in images]) for m, p in enumerate(self.predictors)]
        return [list(member_scores) for member_scores in zip(*per_member, strict=True)]

    def fits_one_pass(self, images: Sequence[Sequence[PreprocessedCase]]) -> bool:
        """Whether these images' tiles fit into one forward pass of every member (``tile_batch``)."""
        return all(sum(p.tiles(cases[m]) for cases in images) <= p.inference.tile_batch
                   for m, p in enumerate(self.predictors))

    def export_files(self, cases: Sequence[PreprocessedCase], scores: Sequence[Scores],
                     save_probabilities: bool) -> tuple[np.ndarray, np.ndarray | ClassChunks | None]:
        """What a folder's files hold: the segmentation, and (asked for) the probabilities. One model's come a few
        classes at a time as they are written; several models' are averaged whole (their segmentation needs them)."""
        if len(self.predictors) > 1 or not save_probabilities:
            prediction = self.export(cases, scores, save_probabilities)
            return prediction.segmentation, prediction.probabilities
        predictor, (case_scores, are_probabilities) = self.predictors[0], scores[0]
        segmentation = predictor.export(cases[0], scores[0], with_probabilities=False).segmentation
        return segmentation, exported_probability_chunks(case_scores, are_probabilities, cases[0].properties,
                                                         predictor.inference)

    def export(self, cases: Sequence[PreprocessedCase], scores: Sequence[Scores],
               save_probabilities: bool) -> Prediction:
        """The segmentation on the input's grid; several members: their probabilities averaged there first."""
        if len(self.predictors) == 1:
            return self.predictors[0].export(cases[0], scores[0], save_probabilities)
        probs = mean_probabilities(p.export(c, s, with_probabilities=True).probabilities
                                   for p, c, s in zip(self.predictors, cases, scores, strict=True))
        first = self.predictors[0].inference
        segmentation = segmentation_from_probabilities(probs, first.region_class_order, first.instances,
                                                       input_spacing(cases[0].properties, first.transpose_backward))
        return Prediction(segmentation, probs.astype(np.float16) if save_probabilities else None)
