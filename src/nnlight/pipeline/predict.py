"""Stage `predict`: segment a folder of images with a trained model (a fold, all folds, or the best choice)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nnlight.evaluation.folder_evaluation import EvaluationSettings, evaluate_folder
from nnlight.evaluation.metrics import metric_components
from nnlight.evaluation.object_metrics import match_threshold
from nnlight.evaluation.selection import load_best
from nnlight.exchange.model_zip import unpack
from nnlight.exchange.nnunet import load_nnunet_model, nnunet_model_and_folds
from nnlight.exchange.onnx_model import is_onnx_model, onnx_model
from nnlight.inference.dicom_seg import SegSettings, SegType, load_segment_codes, write_dicom_seg
from nnlight.inference.folder import AlsoWrite, dicom_cases, input_cases, predict_folder
from nnlight.inference.postprocessing import PostprocessingRules, rules_as_text
from nnlight.inference.predictor import (
    AUTOCAST_DTYPES,
    EnsemblePredictor,
    Predictor,
    ScoresDtype,
    canonical_precision,
    resolve_device,
)
from nnlight.pipeline.config_values import Roots, check_required, resolved_config, typed
from nnlight.raw.dataset_json import DatasetJson, load_dataset_json
from nnlight.raw.dicom import ChannelRule, DicomSeries, holds_dicom, read_dicom_case
from nnlight.raw.dicomweb import DicomwebStudy, StudyAddress, is_web_address, study_address
from nnlight.utils.components import Component
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, atomic_write_text, load_json, writable_folder_problem
from nnlight.utils.folders import CheckpointName, ModelFolder, PredictionFolder, RunFolder
from nnlight.utils.shards import Shard


@dataclass(frozen=True)
class _Models:
    members: list[tuple[Path, list[str] | None]]  # (model folder, folds) of every member
    postprocessing: Path | None  # where a post-processing choice would be
    model_file: Path | None = None  # a model .zip, unpacked into a scratch folder for this run
    checkpoint: CheckpointName | None = None  # the only checkpoint a model file holds


def _models(config: PredictConfig, scratch: Path) -> _Models:
    model, folds = config.model, config.folds
    if model == "best":
        if not config.dataset:
            raise UserError("model=best needs dataset=<DatasetXXX_Name> (whose models nnlight-evaluate compared)")
        selected = load_best(config.roots.results / config.dataset, config.best)
        chosen = " + ".join(f"{folder.parent.name}/{folder.name}" for folder, _ in selected.members)
        print(f"model=best: {chosen}, selected by comparison {selected.comparison or '(unnamed)'} ({selected.source})")
        return _Models([(folder, folds or member_folds) for folder, member_folds in selected.members],
                       selected.postprocessing_file)
    folder = Path(model).expanduser()
    if folder.suffix == ".zip" and folder.is_file():
        manifest = unpack(folder, scratch, config.options.trusted_networks)
        rules = scratch / "postprocessing.json"
        if manifest.postprocessing is not None:
            manifest.postprocessing.save(rules)
        return _Models([(scratch / m.model, folds or m.folds) for m in manifest.members], rules, folder,
                       manifest.checkpoint)
    if not folder.is_dir():
        raise UserError(f"model={model}: no such folder; give a run folder (.../fold_0) or a configuration folder "
                        "(.../<experiment>) under your results, a model file (.zip from nnlight-model export), an "
                        "nnU-Net trained model folder (.../<Trainer>__<Plans>__<configuration>), or model=best "
                        "dataset=<Dataset>")
    if is_onnx_model(folder):  # its rules, if any, are in its spec.json
        return _Models([(folder, None)], None)
    own = ModelFolder(folder).postprocessing  # a configuration folder's, else (a run folder) its parent's
    postprocessing = own if own.is_file() else ModelFolder(folder.parent).postprocessing
    return _Models([(folder, folds)], postprocessing)


def _dataset_json(run: RunFolder) -> DatasetJson:
    """The run folder's copy (nnlight), or the model folder's above the fold (nnU-Net)."""
    for path in (run.dataset_json, run.path.parent / "dataset.json"):
        if path.is_file():
            return load_dataset_json(path)
    raise UserError(f"{run.path}: dataset.json missing from the run folder; it is copied there by nnlight-train")


def _predictor(folder: Path, folds: list[str] | None, options: PredictOptions
               ) -> tuple[Predictor, PostprocessingRules | None]:
    """nnlight's model folders, or an nnU-Net trained model folder (with its own post-processing choice)."""
    tile_batch = 0 if options.tile_batch == "auto" else int(options.tile_batch)
    if is_onnx_model(folder):
        if folds is not None:
            raise UserError(f"folds={folds}: an ONNX model holds the folds it was exported with; export others "
                            "(nnlight-model export format=onnx folds=...)")
        return onnx_model(folder, options.mirroring, options.step_size)
    nnunet = nnunet_model_and_folds(folder, folds)
    if nnunet is None:
        return Predictor.from_model_folder(folder, folds, options.checkpoint, options.mirroring, options.step_size,
                                           options.device, str(options.precision), tile_batch,
                                           options.trusted_networks, options.scores_dtype), None
    model = load_nnunet_model(*nnunet, options.checkpoint, options.nnunet_trainer)
    return Predictor(model.networks, model.plan, model.choices, options.mirroring, options.step_size,
                     resolve_device(options.device), model.fold_folders, str(options.precision),
                     tile_batch, scores_dtype=options.scores_dtype), model.postprocessing


@dataclass(frozen=True)
class PredictOptions:
    """How predict.py predicts (configs/predict.yaml); the model, folders and reference are read separately."""

    checkpoint: CheckpointName = "final"
    mirroring: bool = True
    step_size: float = 0.5
    save_probabilities: bool = False
    postprocessing: bool = True
    overwrite: bool = False
    device: str = "auto"
    precision: str | int = "auto"  # an int where the command line says precision=32 (or 16)
    tile_batch: int | Literal["auto"] = "auto"
    workers: int | Literal["auto"] = "auto"  # threads reading ahead and exporting behind (auto: CPU 0, GPU 3)
    nnunet_trainer: str | None = None  # an nnU-Net model's trainer, stated (else from its checkpoint or its weights)
    trusted_networks: tuple[str, ...] = ()  # modules besides nnlight's and MONAI's whose network classes may load
    output_instances: bool = True  # an instance model writes instance maps (false: its border-core labels)
    scores_dtype: ScoresDtype = "float32"  # what the sliding window holds class scores in (half: less memory)
    output_format: Literal["image", "dicom_seg"] = "image"  # dicom_seg: also a DICOM SEG per input DICOM series
    dicom_channels: tuple[str, ...] | None = None  # DICOM input: which series of a study is each channel
    dicom_seg_type: SegType = "binary"  # binary: every viewer reads it | labelmap: compact for many classes
    dicom_seg_codes: str | None = None  # a JSON file of coded categories and types per label (else "Tissue")
    dicomweb_store: bool = True  # input= a DICOMweb study and output_format=dicom_seg: store each SEG in it
    dicomweb_credentials: str | None = None  # a JSON file with the server's user and password (or token)

    def __post_init__(self) -> None:
        for module in self.trusted_networks:
            if not all(part.isidentifier() for part in str(module).split(".")):
                raise ValueError(f"trusted_networks: {module!r} is not a module name (e.g. my_lab.nets)")
        if not 0 < self.step_size <= 1:
            raise ValueError(f"step_size={self.step_size}: use a value in (0, 1], e.g. 0.5 (half a tile)")
        if self.precision != "auto":
            try:
                canonical_precision(self.precision)
            except UserError:
                raise ValueError(f"precision={self.precision}: choose auto, {', '.join(AUTOCAST_DTYPES)} (Lightning's "
                                 "names such as 16 or bf16 are accepted too)") from None
        if self.tile_batch != "auto" and int(self.tile_batch) < 1:
            raise ValueError(f"tile_batch={self.tile_batch}: use auto or a number of tiles >= 1")
        if self.workers != "auto" and int(self.workers) < 0:
            raise ValueError(f"workers={self.workers}: use auto, 0 (each step in turn) or a number of threads")


@dataclass(frozen=True)
class PredictArguments:
    """What predict.yaml names besides the options: the model, the images, where the segmentations go."""

    model: str
    input: str
    output: str
    dataset: str | int | None = None
    best: str | None = None
    folds: int | str | list[int | str] | None = None
    reference: str | None = None
    shard: int | None = None
    shards: int = 1
    verbose: bool = False


@dataclass(frozen=True)
class ScoringOptions:
    """predict.yaml's ``evaluation``: how predictions are scored against ``reference=``."""

    surface_metrics: bool = True
    tolerance_mm: float = 1.0
    match_iou: float = 0.5


@dataclass(frozen=True)
class PredictConfig:
    """Everything nnlight-predict reads from its config, typed and checked once."""

    model: str  # a run or configuration folder, a model file, an ONNX or nnU-Net folder, or best
    dataset: str | None  # with model=best
    best: str | None  # with model=best: the comparison whose selection to use (None: the latest)
    input: Path  # a folder; for a DICOMweb study, the folder in the output its series are downloaded to
    output: Path
    folds: list[str] | None
    reference: Path | None
    shard: Shard  # this job's part of the input's cases (shard=k shards=N); all of them by default
    options: PredictOptions
    scoring: ScoringOptions
    metrics: tuple[Component, ...]  # the user's per-case scores beside Dice/IoU/HD95/NSD
    roots: Roots
    recorded: str  # the config as YAML: <output>/.hydra/config.yaml, how the predictions were made
    overrides: list[str]  # the command line's
    study: StudyAddress | None = None  # input= a study on a DICOMweb server

    @property
    def log_file(self) -> Path:
        return self.output / "predict.log"


def parse(cfg: DictConfig) -> PredictConfig:
    values = resolved_config(cfg)
    check_required(values, {"model": "nnlight-predict model=<results>/<Dataset>/<configuration>/<experiment>",
                            "input": "nnlight-predict model=... input=<folder of images> output=...",
                            "output": "nnlight-predict model=... input=... output=<folder>"})
    roots = Roots.from_values(values.pop("paths"))
    metrics = metric_components(values.pop("metrics", None) or {})
    scoring = typed(ScoringOptions, values.pop("evaluation", None) or {}, "evaluation")
    match_threshold(scoring.match_iou, "evaluation.match_iou")
    names = {f.name for f in dataclasses.fields(PredictArguments)}
    arguments = typed(PredictArguments, {k: v for k, v in values.items() if k in names})
    options = typed(PredictOptions, {k: v for k, v in values.items() if k not in names}, "predict")
    folds = arguments.folds
    shard = Shard.from_values(arguments.shard, arguments.shards)
    if shard.count > 1 and arguments.reference:
        raise UserError("reference= scores a whole output folder, and a shard writes part of it: predict the shards "
                        "without reference=, then score them all at once by running this command again with "
                        "reference= and without shard= (every finished image is skipped)")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    study = study_address(str(arguments.input)) if is_web_address(str(arguments.input)) else None
    return PredictConfig(
        str(arguments.model), None if arguments.dataset is None else str(arguments.dataset),
        None if arguments.best is None else str(arguments.best),
        Path(arguments.output) / ".dicomweb" / study.study_uid if study else Path(arguments.input),
        Path(arguments.output), None if folds is None else [str(f) for f in (folds if isinstance(folds, list)
                                                                            else [folds])],
        Path(arguments.reference) if arguments.reference else None, shard, options, scoring, metrics, roots,
        OmegaConf.to_yaml(cfg), overrides, study)


def _check_output(output: Path, input_folder: Path) -> None:
    """Predictions never land among the input images, and the folder can be written, before anything runs."""
    if output.resolve() == input_folder.resolve() or input_folder.resolve() in output.resolve().parents:
        raise UserError(f"output={output} is the input folder or inside it: predictions could replace or be taken "
                        "for input images; choose an output folder outside the input folder")
    problem = writable_folder_problem(output)
    if problem:
        raise UserError(f"output={output}: {problem}; choose an output folder you can write to")


def _check_made_by(folder: PredictionFolder, made_by: dict[str, Any], options: PredictOptions,
                   file_ending: str) -> None:
    """One output folder holds the predictions of one model: refuse to mix in another model's, or settings."""
    if folder.made_by.is_file():
        previous = load_json(folder.made_by)
        if previous.get("model") != made_by["model"]:
            raise UserError(f"{folder.path} holds predictions of another model ({previous.get('model')}); predict "
                            "into another output folder, or delete those predictions first")
        if previous.get("settings") != made_by["settings"] and not options.overwrite:
            raise UserError(f"{folder.path}: its predictions were made with {previous.get('settings')}; rerun with "
                            "overwrite=true to redo every case with the new settings, or use another output folder")
    elif folder.path.is_dir() and any(not p.name.startswith(".") for p in folder.path.glob(f"*{file_ending}")):
        raise UserError(f"{folder.path} already holds {file_ending} files that nnlight-predict did not write for this "
                        "model; predict into a new or empty folder")


def _seg_settings(options: PredictOptions, dataset_json: DatasetJson, predictor: EnsemblePredictor, model: str,
                  instances: bool) -> SegSettings:
    """A segment per label (a region: the labels it covers), named as in dataset.json, or per object of an
    instance map; and the algorithm."""
    segments = {name: (value,) if isinstance(value, int) else tuple(value)
                for name, value in dataset_json.labels.items()
                if value != 0 and name != "background" and value != dataset_json.ignore_label}
    names = list(segments)
    codes = load_segment_codes(Path(options.dicom_seg_codes), names) if options.dicom_seg_codes else None
    folders = [folder for member in predictor.predictors for folder in member.model_folders]
    algorithm = {"model": model, "configuration": " + ".join(dict.fromkeys(f.parent.parent.name for f in folders)),
                 "folds": ", ".join(f.name for f in folders)}
    return SegSettings(segments, algorithm, options.dicom_seg_type, codes,
                       dataset_json.object_name if instances else None)


def run(config: PredictConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="nnlight-model-") as scratch:
        try:
            return _run(config, Path(scratch))
        except UserError as e:  # a model file is unpacked into the scratch folder: name the file the user gave
            if scratch not in str(e):
                raise
            raise UserError(str(e).replace(scratch, f"{config.model}:")) from None


def _run(config: PredictConfig, scratch: Path) -> dict:
    options, input_folder, output = config.options, config.input, config.output
    study = None
    if config.study is None:
        _check_output(output, input_folder)
    else:  # the study's image series into the output folder first (an interrupted download goes on)
        problem = writable_folder_problem(output)
        if problem:
            raise UserError(f"output={output}: {problem}; choose an output folder you can write to")
        study = DicomwebStudy(config.study, Path(options.dicomweb_credentials) if options.dicomweb_credentials
                              else None)
        print(f"Reading study {config.study} ...", flush=True)
        for series, why in study.download(input_folder).items():
            print(f"Set aside: series {series}: {why}")
    models = _models(config, scratch)
    if models.checkpoint is not None:
        options = dataclasses.replace(options, checkpoint=models.checkpoint)
    start = time.perf_counter()
    loaded = [_predictor(folder, folds, options) for folder, folds in models.members]
    predictor = EnsemblePredictor([p for p, _ in loaded])
    instances = predictor.predictors[0].inference.instances is not None
    if instances and not options.output_instances:
        if config.reference:
            raise UserError("reference= scores instance maps: leave output_instances=true (false writes the "
                            "border-core labels, which have no reference)")
        for member in predictor.predictors:
            member.inference = dataclasses.replace(member.inference, instances=None)
    dataset_json = _dataset_json(RunFolder(predictor.predictors[0].model_folders[0]))
    dicom: dict[str, tuple[DicomSeries, ...]] = {}
    if not input_folder.is_dir() or not holds_dicom(input_folder) or \
            any(input_folder.glob(f"*{dataset_json.file_ending}")):
        cases, refused = input_cases(input_folder, dataset_json.file_ending, predictor.num_channels)  # before writing
    else:  # a folder of DICOM files: one case per image series
        dicom, refused = dicom_cases(input_folder, predictor.num_channels, None if options.dicom_channels is None
                                     else [ChannelRule.parse(rule) for rule in options.dicom_channels])
        cases = {case: tuple(f for series in channels for f in series.files) for case, channels in dicom.items()}
    if options.output_format == "dicom_seg" and not dicom:
        raise UserError(f"output_format=dicom_seg: {input_folder} holds no DICOM series, and a DICOM SEG refers to the "
                        "series it segments; give a folder of DICOM files, or leave output_format=image")
    seg_settings = _seg_settings(options, dataset_json, predictor, str(config.model), instances
                                 and options.output_instances) if options.output_format == "dicom_seg" else None
    everything = [*cases, *refused]
    cases = {c: files for c, files in cases.items() if config.shard.contains(c)}
    refused = {c: why for c, why in refused.items() if config.shard.contains(c)}
    other_shards = [c for c in everything if not config.shard.contains(c)]
    rules = loaded[0][1] if len(loaded) == 1 and loaded[0][1] else PostprocessingRules.load(models.postprocessing) \
        if models.postprocessing and models.postprocessing.is_file() else None
    rules = rules if options.postprocessing else None
    folder = PredictionFolder(output)
    members = [[str(r.resolve()) for r in p.model_folders] for p in predictor.predictors]
    if models.model_file is not None:  # the scratch folder changes every run: the file names the model
        members = [[str(models.model_file.resolve()), *(str(r.relative_to(scratch)) for r in p.model_folders)]
                   for p in predictor.predictors]
    made_by = {"model": {"members": members, "checkpoint": options.checkpoint},
               "settings": {"mirroring": options.mirroring, "step_size": options.step_size,
                            "precision": [p.inference.precision for p in predictor.predictors],
                            **({"scores_dtype": options.scores_dtype} if options.scores_dtype != "float32" else {}),
                            "postprocessing": rules_as_text(rules) if rules else "none",
                            **({"output_instances": options.output_instances} if instances else {}),
                            **({"output_format": options.output_format} if options.output_format != "image" else {}),
                            **({"dicom_seg_type": options.dicom_seg_type} if seg_settings else {})}}
    _check_made_by(folder, made_by, options, dataset_json.file_ending)

    def record_how_it_is_made() -> None:
        atomic_write_json(folder.made_by, made_by)
        atomic_write_text(folder.config, config.recorded)
        atomic_write_text(folder.overrides, OmegaConf.to_yaml(OmegaConf.create(config.overrides)))

    also_write = None if seg_settings is None else AlsoWrite(
        lambda folder, case: folder / f"{case}_seg.dcm",
        lambda case, segmentation, geometry, path: write_dicom_seg(segmentation, dicom[case][0], geometry,
                                                                   seg_settings, path))
    report = predict_folder(predictor, cases, output, dataset_json.file_ending, rules, options.save_probabilities,
                            options.overwrite, record_how_it_is_made, refused,
                            None if options.workers == "auto" else int(options.workers), other_shards,
                            (lambda case: read_dicom_case(dicom[case])) if dicom else None, also_write)
    seconds = time.perf_counter() - start
    rate = ("" if not report.predicted else f", {len(report.predicted) / seconds:.2f} images/s"
            if len(report.predicted) >= seconds else f", {seconds / len(report.predicted):.1f} s per image")
    folds_used = [f"{p.model_folders[0].parent.parent.name}/{p.model_folders[0].parent.name} "
                  f"({', '.join(f.name for f in p.model_folders)})" for p in predictor.predictors]
    lines = [f"\nPredicted {len(report.predicted)} case(s) in {seconds:.1f} s{rate}"
             + (f" ({len(report.skipped)} already done, skipped)" if report.skipped else "")
             + (f", {config.shard.describe()} ({len(other_shards)} case(s) left to the other shards)"
                if config.shard.count > 1 else "") + f": {output}",
             f"  model: {' + '.join(folds_used)}, checkpoint {options.checkpoint}, "
             f"mirroring {'on' if options.mirroring else 'off'}, precision "
             f"{'/'.join(sorted({p.inference.precision for p in predictor.predictors}))}, tiles per pass "
             f"{predictor.predictors[0].inference.tile_batch} (small images share them), post-processing: "
             f"{rules_as_text(rules) if rules else 'none'}"]
    summary = None
    if config.reference and (report.predicted or report.skipped):
        scoring = config.scoring
        summary = evaluate_folder(output, config.reference, EvaluationSettings(
            dict(dataset_json.labels), dataset_json.file_ending, dataset_json.ignore_label,
            scoring.surface_metrics, scoring.tolerance_mm, config.metrics, instances, scoring.match_iou),
            allow_missing=True)
        scores = summary["foreground_mean"]
        objects = f", SEG {scores['SEG']:.4f}, F1 {scores['F1']:.4f}, ARE {scores['ARE']:.4f}" if instances else ""
        lines.append(f"  foreground mean Dice {scores['Dice']:.4f}{objects} over {summary['cases']} "
                     f"case(s) -> {folder.summary}, {folder.summary_csv}")
    if study is not None and also_write is not None and options.dicomweb_store:
        segs = [also_write.path(output, case) for case in [*report.predicted, *report.skipped]]
        study.store(segs)
        lines.append(f"  stored {len(segs)} DICOM SEG(s) in study {config.study}")
    print("\n".join(lines))
    if study is not None and not report.failed and config.shard.count == 1:  # the downloaded copy goes
        shutil.rmtree(input_folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # other studies' downloads stay
            input_folder.parent.rmdir()
    if report.failed:  # the others are written; the exit code says that not every image was
        raise UserError(f"{len(report.failed)} of {len(report.failed) + len(report.predicted) + len(report.skipped)} "
                        f"image(s) failed, each with its error in {folder.failed} (e.g. {next(iter(report.failed))}: "
                        f"{next(iter(report.failed.values()))}); the others are predicted. Fix them and rerun: "
                        "finished images are skipped")
    return {"predicted": report.predicted, "skipped": report.skipped, "seconds": seconds, "summary": summary}
