"""Stage `predict`: segment a folder of images with a trained model (a fold, all folds, or the best choice)."""

from __future__ import annotations

import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nnlight.evaluation.folder import EvaluationSettings, evaluate_folder
from nnlight.evaluation.postprocessing import PostprocessingRules, rules_as_text
from nnlight.evaluation.selection import load_best
from nnlight.inference.folder import input_cases, predict_folder
from nnlight.inference.predictor import EnsemblePredictor, Predictor
from nnlight.pipeline.settings import required
from nnlight.raw.dataset_json import DatasetJson, load_dataset_json
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_text
from nnlight.utils.folders import CHECKPOINT_NAMES, DatasetResults, ModelFolder, PredictionFolder, RunFolder


def _models(cfg: DictConfig) -> tuple[list[tuple[Path, list[str] | None]], Path | None]:
    """(model folder, folds) of every member, and where a post-processing choice would be."""
    model = str(required(cfg, "model", "python predict.py model=<results>/<Dataset>/<configuration>/<experiment>"))
    folds = None if cfg.folds is None else [str(f) for f in OmegaConf.to_container(cfg.folds)] \
        if OmegaConf.is_list(cfg.folds) else [str(cfg.folds)]
    if model == "best":
        if not cfg.dataset:
            raise UserError("model=best needs dataset=<DatasetXXX_Name> (whose trained models evaluate.py compared)")
        dataset_results = Path(cfg.paths.results) / str(cfg.dataset)
        members, _ = load_best(dataset_results)
        return [(folder, folds or member_folds) for folder, member_folds in members], \
            DatasetResults(dataset_results).postprocessing
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise UserError(f"model={model}: no such folder; give a run folder (.../fold_0) or a configuration folder "
                        "(.../<experiment>) under your results, or model=best dataset=<Dataset>")
    own = ModelFolder(folder).postprocessing  # a configuration folder's, else (a run folder) its parent's
    postprocessing = own if own.is_file() else ModelFolder(folder.parent).postprocessing
    return [(folder, folds)], postprocessing


def _dataset_json(run: RunFolder) -> DatasetJson:
    if not run.dataset_json.is_file():
        raise UserError(f"{run.path}: dataset.json missing from the run folder; it is copied there by train.py")
    return load_dataset_json(run.dataset_json)


def run(cfg: DictConfig) -> dict:
    if cfg.checkpoint not in CHECKPOINT_NAMES:
        raise UserError(f"checkpoint={cfg.checkpoint}: choose one of {', '.join(CHECKPOINT_NAMES)}")
    input_folder = Path(str(required(cfg, "input", "python predict.py model=... input=<folder of images> output=...")))
    output = Path(str(required(cfg, "output", "python predict.py model=... input=... output=<folder>")))
    members, postprocessing_file = _models(cfg)
    start = time.perf_counter()
    predictor = EnsemblePredictor([
        Predictor.from_model_folder(folder, folds, cfg.checkpoint, bool(cfg.mirroring), float(cfg.step_size),
                                    str(cfg.device)) for folder, folds in members])
    dataset_json = _dataset_json(RunFolder(predictor.predictors[0].model_folders[0]))
    cases = input_cases(input_folder, dataset_json.file_ending, predictor.num_channels)  # checked before any write
    atomic_write_text(PredictionFolder(output).config, OmegaConf.to_yaml(cfg))  # how these predictions were made
    atomic_write_text(PredictionFolder(output).overrides,
                      OmegaConf.to_yaml(OmegaConf.create(list(HydraConfig.get().overrides.task))))
    rules = PostprocessingRules.load(postprocessing_file) if cfg.postprocessing and postprocessing_file \
        and postprocessing_file.is_file() else None
    report = predict_folder(predictor, cases, output, dataset_json.file_ending, rules,
                            bool(cfg.save_probabilities), bool(cfg.overwrite))
    seconds = time.perf_counter() - start
    folds_used = [f"{p.model_folders[0].parent.parent.name}/{p.model_folders[0].parent.name} "
                  f"({', '.join(f.name for f in p.model_folders)})" for p in predictor.predictors]
    lines = [f"\nPredicted {len(report.predicted)} case(s) in {seconds:.1f} s"
             + (f" ({len(report.skipped)} already done, skipped)" if report.skipped else "") + f": {output}",
             f"  model: {' + '.join(folds_used)}, checkpoint {cfg.checkpoint}, "
             f"mirroring {'on' if cfg.mirroring else 'off'}, post-processing: "
             f"{rules_as_text(rules) if rules else 'none'}"]
    summary = None
    if cfg.reference:
        summary = evaluate_folder(output, Path(str(cfg.reference)), EvaluationSettings(
            dict(dataset_json.labels), dataset_json.file_ending, dataset_json.ignore_label,
            bool(cfg.evaluation.surface_metrics), float(cfg.evaluation.tolerance_mm)))
        lines.append(f"  foreground mean Dice {summary['foreground_mean']['Dice']:.4f} -> "
                     f"{PredictionFolder(output).summary}, {PredictionFolder(output).summary_csv}")
    print("\n".join(lines))
    return {"predicted": report.predicted, "skipped": report.skipped, "seconds": seconds, "summary": summary}
