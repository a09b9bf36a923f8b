"""Cross-validation results of every trained model of a dataset, their pair ensembles, and the best choice.

A *model* is a configuration folder ``<results>/<Dataset>/<configuration>/<experiment>`` with ``fold_*``
runs whose ``validation/`` holds the fold's predictions. Its folds are merged into ``crossval/`` and scored
against the raw labels; every pair of models is ensembled by averaging the saved probabilities
(``validation/<case>.npz``); the best by foreground mean Dice is chosen (nnU-Net's
``find_best_configuration``), post-processing is determined on its cross-validation predictions, and
``best_configuration.json`` records what ``predict.py model=best`` needs to reproduce it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnlight.evaluation.cv_plot import write_cv_plot
from nnlight.evaluation.folder_evaluation import EvaluationSettings, evaluate_folder
from nnlight.evaluation.metrics import SEMANTIC_SCORES, metric_name, score_names, summarize
from nnlight.evaluation.object_metrics import LOWER_IS_BETTER
from nnlight.evaluation.postprocessing_search import determine_postprocessing
from nnlight.inference.export import (
    mean_probabilities,
    read_probabilities,
    segmentation_from_probabilities,
    write_segmentation,
    written_completely,
)
from nnlight.inference.postprocessing import PostprocessingRules, rules_as_text
from nnlight.model.checkpoints import checkpoint_problem
from nnlight.planning.facts import DatasetFacts
from nnlight.raw.instances import InstancePlan
from nnlight.raw.io import image_format, read_seg
from nnlight.utils.components import Component
from nnlight.utils.console_progress import progress
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_copy, atomic_write_json, atomic_write_text, load_json
from nnlight.utils.folders import DatasetResults, ModelFolder, RunFolder
from nnlight.utils.names import folder_name


@dataclass(frozen=True)
class TrainedModel:
    folder: ModelFolder  # <results>/<Dataset>/<configuration>/<experiment>
    folds: list[str]
    cases: dict[str, Path]  # validation case -> the fold's prediction
    region_class_order: list[int] | None
    instances: InstancePlan | None = None  # an instance model: an ensemble's averaged scores become objects

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(frozen=True)
class Candidates:
    models: list[TrainedModel]
    left_out: dict[str, str]  # model name -> why it takes no part


def search_of(runs: Sequence[RunFolder]) -> str | None:
    """The hyperparameter search (``hparams_search`` option) a run was a trial of, from its ``run_config.json``."""
    for run in runs:
        if run.run_config.is_file():
            search = load_json(run.run_config).get("search")
            if search:
                return str(search)
    return None


def fold_problem(run: RunFolder, file_ending: str) -> str | None:
    """Why a trained fold cannot count in model selection, or None: it was validated, its final checkpoint (what
    ``model=best`` predicts with) is intact, and every validation prediction its summary scored is complete."""
    if not run.validation_summary.is_file():
        return "not validated (no validation/summary.json)"
    problem = checkpoint_problem(run.checkpoint("final"))
    if problem:
        return problem
    for entry in load_json(run.validation_summary).get("metric_per_case", []):
        prediction = run.validation / f"{entry['case']}{file_ending}"
        if not written_completely(prediction):
            return (f"{prediction} is missing, empty or truncated (validate the fold again: delete its "
                    "run_stats.json and validation/, then run its nnlight-train command again)")
    return None


def find_trained_models(dataset_results: DatasetResults, file_ending: str, folds: Sequence[str],
                        chosen: Sequence[str] | None = None) -> Candidates:
    """The candidates of model selection: complete cross-validations (every fold of ``folds`` trained, validated
    and intact) of the models under ``dataset_results`` — only those in ``chosen`` when given. Debug runs, search
    trials (unless chosen by name) and ``fold_all`` (validated on its own training cases) never take part; every
    model left out is named with why."""
    models, left_out = [], {}
    for folder in dataset_results.model_folders():
        runs = [r for r in folder.runs() if r.fold != "all"]
        if not runs or (chosen is not None and folder.name not in chosen):
            continue
        if folder.is_debug:
            left_out[folder.name] = "a debug run (never a result)"
            continue
        search = search_of(runs)
        if search and chosen is None:
            left_out[folder.name] = (f"a trial of the search hparams_search={search} (chosen on these validation "
                                     "cases; name it in models=[...] to compare it anyway)")
            continue
        counted, problems = {}, []
        for run in (r for r in runs if r.fold in folds):
            problem = fold_problem(run, file_ending)
            if problem:
                problems.append(f"fold {run.fold}: {problem}")
            else:
                counted[run.fold] = run
        missing = [f for f in folds if f not in counted]
        if missing:
            untrained = [f for f in missing if f not in {r.fold for r in runs}]
            left_out[folder.name] = "incomplete cross-validation: " + "; ".join(
                [*problems, *([f"fold {', '.join(untrained)} not trained"] if untrained else [])])
            continue
        cases = {}
        for fold in folds:
            run = counted[fold]
            for entry in load_json(run.validation_summary)["metric_per_case"]:
                cases[entry["case"]] = run.validation / f"{entry['case']}{file_ending}"
        facts = DatasetFacts.from_plan(load_json(counted[folds[0]].plan), str(counted[folds[0]].plan))
        layout = facts.layout
        models.append(TrainedModel(folder, list(folds), cases,
                                   list(layout.regions_class_order or ()) if layout.has_regions else None,
                                   facts.instances))
    return Candidates(models, left_out)


def _merge_folds(model: TrainedModel, file_ending: str) -> Path:
    """``crossval/``: every counted fold's validation predictions in one folder (copies; the runs stay untouched),
    and nothing else (a copy of a fold no longer counted is removed)."""
    crossval = model.folder.crossval
    crossval.mkdir(exist_ok=True)
    wanted = {source.name for source in model.cases.values()}
    for stale in crossval.glob(f"*{file_ending}"):
        if stale.name not in wanted:
            stale.unlink()
    for source in model.cases.values():
        target = crossval / source.name
        if not written_completely(target) or target.stat().st_mtime < source.stat().st_mtime:
            atomic_copy(source, target)
    return crossval


def _ensemble(members: Sequence[TrainedModel], cases: Sequence[str], out: Path, file_ending: str) -> bool:
    """Average the members' probabilities per case into ``out``; False if a member lacks probabilities."""
    for m in members:
        if any(not m.cases[c].with_name(f"{c}.npz").is_file() for c in cases):
            return False
    out.mkdir(parents=True, exist_ok=True)
    file_format = image_format(file_ending)
    for case_id in progress(cases, desc=f"Ensembling {' + '.join(m.name for m in members)}", unit="case"):
        target = out / f"{case_id}{file_ending}"
        if written_completely(target):  # done by an earlier evaluation (verified, not only present)
            continue
        probs = mean_probabilities(read_probabilities(m.cases[case_id].with_name(f"{case_id}.npz")) for m in members)
        _, geometry = read_seg(members[0].cases[case_id], file_format)
        segmentation = segmentation_from_probabilities(probs, members[0].region_class_order, members[0].instances,
                                                       geometry.spacing)
        write_segmentation(segmentation, target, geometry)
    return True


def _load_segmentations(folder: Path, cases: Sequence[str], file_ending: str) -> dict[str, np.ndarray]:
    file_format = image_format(file_ending)
    return {c: read_seg(folder / f"{c}{file_ending}", file_format)[0][0] for c in cases}


def select_best(results_folder: Path, reference_folder: Path, labels: Mapping[str, Any], file_ending: str,
                ignore_label: int | None = None, ensembles: bool = True, tolerance_mm: float = 1.0,
                num_workers: int = 2, fold_count: int = 5, folds: Sequence[str] | None = None,
                models: Sequence[str] | None = None, metrics: Sequence[Component] = (), instances: bool = False,
                selection_metric: str = "Dice", match_iou: float = 0.5, name: str | None = None) -> dict[str, Any]:
    """Score every model with a complete cross-validation over ``folds`` (default: all ``fold_count``) and every
    pair ensemble, pick the best by the foreground mean of ``selection_metric`` (lower is better for HD95, ARE
    and VI), determine its post-processing. ``models`` names the candidates (search trials included when named);
    the others, and every model left out, are listed with why. ``instances``: the labels are instance maps, scored
    object by object too (objects match at ``match_iou``); post-processing (keeping the largest component) does not
    apply to them. Everything is written to the comparison ``name`` (default: one derived from the candidates and
    folds), which becomes the latest; no other comparison is touched."""
    folds = [str(f) for f in (folds if folds is not None else range(fold_count))]
    dataset_results = DatasetResults(results_folder)
    if models is not None:
        known = {m.name for m in dataset_results.model_folders()}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise UserError(f"models={unknown[0]}: no such model under {results_folder}; trained: "
                            f"{', '.join(sorted(known)) or 'none'}")
    found = find_trained_models(dataset_results, file_ending, folds, models)
    for left, why in found.left_out.items():
        print(f"Left out of model selection: {left}: {why}")
    if not found.models:
        subset = "" if len(folds) == fold_count else f" over folds {', '.join(folds)}"
        raise UserError(f"{results_folder}: no complete cross-validation{subset} to select from" +
                        (f" ({len(found.left_out)} model(s) left out, listed above)" if found.left_out else "") +
                        f". Train every fold (nnlight-train -m plan=<Dataset>/<configuration> "
                        f"data.fold={','.join(str(k) for k in range(fold_count))}), or compare the folds you trained: "
                        "nnlight-evaluate dataset=<Dataset> folds=0; debug runs and search trials do not count")
    trained = found.models
    comparison = dataset_results.comparison(
        folder_name(name, "name") if name is not None else comparison_name([m.name for m in trained], folds))
    common = sorted(set.intersection(*(set(m.cases) for m in trained)))
    if not common:
        raise UserError(f"{results_folder}: the trained models share no validation case; train the same folds of "
                        f"each configuration ({', '.join(f'{m.name}: folds {m.folds}' for m in trained)})")
    settings = EvaluationSettings(labels, file_ending, ignore_label, True, tolerance_mm, tuple(metrics), instances,
                                  match_iou)
    candidates: dict[str, dict[str, Any]] = {}
    for model in trained:
        summary = evaluate_folder(_merge_folds(model, file_ending), reference_folder, settings,
                                  num_workers=num_workers, allow_missing=True)
        candidates[model.name] = {"members": [model], "folder": model.folder.crossval, "summary": summary}
    if ensembles:
        for pair in itertools.combinations(trained, 2):
            if pair[0].region_class_order != pair[1].region_class_order:
                continue
            pair_name = " + ".join(m.name for m in pair)
            out = dataset_results.ensemble([m.folder for m in pair])
            if _ensemble(pair, common, out, file_ending):
                summary = evaluate_folder(out, reference_folder, settings, num_workers=num_workers,
                                          allow_missing=True)
                candidates[pair_name] = {"members": list(pair), "folder": out, "summary": summary}
            else:
                print(f"Ensemble {pair_name} skipped: validation probabilities (.npz) missing; train with "
                      "validation.save_probabilities=true")
    references = {} if instances else _load_segmentations(reference_folder, common, file_ending)
    for model in progress(trained, desc="Post-processing per model", unit="model"):  # used by predict.py model=<folder>
        rules = PostprocessingRules(False, []) if instances else determine_postprocessing(
            _load_segmentations(model.folder.crossval, common, file_ending), references, labels, ignore_label)[0]
        rules.save(model.folder.postprocessing)
    for candidate in candidates.values():  # compare on the cases every candidate predicted
        per_case = {e["case"]: e["metrics"] for e in candidate["summary"]["metric_per_case"]}
        candidate["common"] = summarize({c: per_case[c] for c in common})
        fold_of = {c: candidate["members"][0].cases[c].parent.parent.name.removeprefix("fold_") for c in common}
        candidate["per_fold"] = {fold: _dice(summarize({c: per_case[c] for c in common if fold_of[c] == fold}))
                                 for fold in sorted(set(fold_of.values()))}
    lower_is_better = selection_metric in LOWER_IS_BETTER or any(
        metric_name(m) == selection_metric and not getattr(m.cls, "higher_is_better", True) for m in metrics)
    best_name = max(candidates, key=lambda n: ranking_value(candidates[n]["common"], selection_metric,
                                                            lower_is_better))
    best = candidates[best_name]
    if instances:
        rules, before, after = PostprocessingRules(False, []), best["common"], best["common"]
    else:
        rules, before, after = determine_postprocessing(_load_segmentations(best["folder"], common, file_ending),
                                                        references, labels, ignore_label)
    rules.save(comparison.postprocessing)
    complete = len(folds) == fold_count
    result = {
        "comparison": comparison.name,
        "selected": {"name": best_name,
                     "members": [{"model": str(m.folder.path.relative_to(results_folder)), "folds": m.folds}
                                 for m in best["members"]],
                     "postprocessing": str(comparison.postprocessing.relative_to(results_folder)),
                     "postprocessing_rules": rules_as_text(rules),
                     "cv_foreground_dice": _dice(before), "cv_foreground_dice_postprocessed": _dice(after),
                     "selection_metric": selection_metric,
                     "cv_selection_value": best["common"]["foreground_mean"].get(selection_metric),
                     "selection_lower_is_better": lower_is_better,
                     "cv_complete": complete},
        "cases_compared": len(common),
        "folds": folds,
        "fold_count": fold_count,
        "left_out": found.left_out,
        "candidates": {n: {"foreground_mean": c["common"]["foreground_mean"],
                           "fold_foreground_dice": c["per_fold"],  # the spread over folds in cv_results.png
                           "cases": len(common),
                           "mean": c["common"]["mean"], "members": [m.name for m in c["members"]],
                           "folds": {m.name: m.folds for m in c["members"]}, "cv_complete": complete}
                       for n, c in candidates.items()},
    }
    atomic_write_json(comparison.best_configuration, result)
    atomic_write_text(comparison.cv_table, results_table(result))
    atomic_write_text(comparison.cv_csv, results_csv(result))
    write_cv_plot(result, comparison.cv_plot, f"{results_folder.name}: {comparison.name}")
    atomic_write_json(dataset_results.latest_comparison, {"name": comparison.name})
    return result


def comparison_name(candidates: Sequence[str], folds: Sequence[str]) -> str:
    """A comparison's default name: its folds, how many models and a hash of which (the same candidates and folds
    give the same name, so evaluating them again updates that comparison and no other)."""
    digest = hashlib.sha256("\n".join(sorted(candidates)).encode()).hexdigest()[:8]
    return f"folds{'-'.join(folds)}_{len(candidates)}models_{digest}"


def ranking_value(summary: Mapping[str, Any], metric: str, lower_is_better: bool = False) -> float:
    """The foreground mean of ``metric`` as "higher is better" (negated for distances and errors); NaN ranks last."""
    value = float(summary["foreground_mean"].get(metric, float("nan")))
    if np.isnan(value):
        return -np.inf
    return -value if lower_is_better else value


def _dice(summary: Mapping[str, Any]) -> float:
    value = summary["foreground_mean"]["Dice"]
    return -1.0 if np.isnan(value) else float(value)


def _fold_spread(candidate: Mapping[str, Any]) -> tuple[float, int]:
    """The standard deviation of the folds' own foreground Dice and how many folds (0 std for one fold)."""
    per_fold = list(candidate.get("fold_foreground_dice", {}).values())
    return (float(np.std(per_fold)) if len(per_fold) > 1 else 0.0), len(per_fold)


def _ranked(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    metric = result["selected"].get("selection_metric", "Dice")
    lower = result["selected"].get("selection_lower_is_better", False)
    return sorted(result["candidates"].items(), key=lambda kv: -ranking_value(kv[1], metric, lower))


def _own_scores(rows: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    return [m for m in score_names({"all": rows[0][1]["foreground_mean"]}) if m not in SEMANTIC_SCORES] if rows else []


def results_table(result: Mapping[str, Any]) -> str:
    """Markdown: one row per candidate, best first: foreground mean Dice ± the std over folds, the number of folds
    and cases behind it, HD95 / NSD and a user's metrics; then what was left out."""
    metric = result["selected"].get("selection_metric", "Dice")
    rows = _ranked(result)
    folds = result.get("folds", [])
    name = f"Comparison `{result['comparison']}`: c" if "comparison" in result else "C"
    lines = [f"{name}ross-validation on {result['cases_compared']} case(s). Selected: "
             f"**{result['selected']['name']}** (by {metric}), post-processing: "
             f"{result['selected']['postprocessing_rules']}.", ""]
    if not result["selected"]["cv_complete"]:
        lines += [f"**Compared on folds {', '.join(folds)} only** (of {result['fold_count']}), as asked with "
                  "folds=[...]: train the other folds before trusting the choice.", ""]
    own = _own_scores(rows)
    lines += ["| model | folds | n cases | Dice (mean ± std over folds) | HD95 (mm) | NSD |"
              + "".join(f" {m} |" for m in own),
              "|---|---|---|---|---|---|" + "---|" * len(own)]
    for candidate_name, c in rows:
        fg = c["foreground_mean"]
        std, _ = _fold_spread(c)
        lines.append(f"| {candidate_name} | {len(folds)}/{result['fold_count']} | "
                     f"{c.get('cases', result['cases_compared'])} | {fg['Dice']:.4f} ± {std:.4f} | "
                     f"{fg.get('HD95', float('nan')):.2f} | {fg.get('NSD', float('nan')):.4f} |"
                     + "".join(f" {fg.get(m, float('nan')):.4f} |" for m in own))
    if result.get("left_out"):
        lines += ["", "Left out of model selection:", ""]
        lines += [f"- {left}: {why}" for left, why in result["left_out"].items()]
    return "\n".join(lines) + "\n"


def results_csv(result: Mapping[str, Any]) -> str:
    """The table as CSV, best first: the numbers unrounded, the std over folds and the counts in columns."""
    rows = _ranked(result)
    own = _own_scores(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "selected", "n_folds", "n_cases", "dice_mean", "dice_std_over_folds", "hd95_mean",
                     "nsd_mean", *own])
    for candidate_name, c in rows:
        fg = c["foreground_mean"]
        std, n_folds = _fold_spread(c)
        writer.writerow([candidate_name, candidate_name == result["selected"]["name"], n_folds,
                         c.get("cases", result["cases_compared"]), fg["Dice"], std, fg.get("HD95", ""),
                         fg.get("NSD", ""), *(fg.get(m, "") for m in own)])
    return buffer.getvalue()


@dataclass(frozen=True)
class SelectedModel:
    """What a comparison selected: the models (folder, folds), the post-processing and where it was read."""

    members: list[tuple[Path, list[str]]]
    postprocessing: PostprocessingRules
    postprocessing_file: Path
    comparison: str  # its name ("" for a selection written before comparisons were named)
    source: Path  # the best_configuration.json read


def load_best(results_folder: Path, name: str | None = None) -> SelectedModel:
    """The selection of comparison ``name`` (default: the latest) written by :func:`select_best`; a dataset
    evaluated before comparisons were named keeps its one ``best_configuration.json``."""
    results = DatasetResults(results_folder)
    latest = results.latest()
    name = name if name is not None else latest.name if latest is not None else None
    path = results.comparison(folder_name(name, "best")).best_configuration if name else \
        results.legacy_best_configuration
    if not path.is_file():
        known = sorted(p.name for p in results.comparisons.glob("*") if p.is_dir())
        raise UserError(f"{path}: not found; " + (f"comparisons of {results_folder.name}: {', '.join(known)}"
                        if known else f"run nnlight-evaluate dataset={results_folder.name} first to select the "
                        "best configuration"))
    best = load_json(path)["selected"]
    rules_file = results_folder / best["postprocessing"]
    return SelectedModel([(results_folder / m["model"], list(m["folds"])) for m in best["members"]],
                         PostprocessingRules.load(rules_file), rules_file, name or "", path)
