"""Stage `benchmark`: a suite end to end — check, plan what is not planned, train every unfinished run (train.py
sweeps, any Hydra launcher), then write the tables and the report under ``<results>/benchmarks/<suite>/``.

Every run is an ordinary train.py run, so a finished one is recognised by its own folder (``run_stats.json``)
and skipped, an interrupted one resumes from its last checkpoint, and a failed one is recorded with its error
while the others go on.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlight.benchmarking.paper_tables import summary_csv, summary_latex, summary_rows
from nnlight.benchmarking.report import comparisons, per_case_plot, rank_plot, ranks, report_markdown, variant_results
from nnlight.benchmarking.suite import (
    Suite,
    SuiteDataset,
    SuiteRun,
    read_suite,
    run_overrides,
    suite_runs,
    sweep_overrides,
)
from nnlight.benchmarking.table import RUN_COLUMNS, case_columns, case_rows, run_row, to_csv
from nnlight.evaluation.metrics import metric_components, metric_name
from nnlight.pipeline import plan as plan_stage
from nnlight.pipeline.cli import compose_config, composition_problem, search_path_override, train_run_folder
from nnlight.pipeline.config_dir import CONFIG_DIR, user_config_dir
from nnlight.pipeline.config_values import Roots, resolved_config, typed
from nnlight.pipeline.fairness import fairness_lines, suite_fairness, training_setup
from nnlight.pipeline.plan import resolve_raw_folder
from nnlight.pipeline.train import rescore_validation
from nnlight.planning.plan_configs import config_name
from nnlight.raw.synthetic import make_synthetic_dataset
from nnlight.utils.errors import UserError
from nnlight.utils.figures import figure_files
from nnlight.utils.files import load_json, write_if_changed
from nnlight.utils.folders import RunFolder
from nnlight.utils.parallel import die_with_parent


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything nnlight-benchmark reads from its config, typed and checked once."""

    suite: Suite
    dry_run: bool
    roots: Roots  # absolute: train.py runs in other processes
    log_file: Path | None = None  # each train.py sweep logs into the suite's folder


@dataclass(frozen=True)
class _BenchmarkOptions:
    dry_run: bool = False
    verbose: bool = False


def parse(cfg: DictConfig) -> BenchmarkConfig:
    values = resolved_config(cfg)
    suite = read_suite(values.pop("suite"))
    roots = Roots.from_values(values.pop("paths"))
    options = typed(_BenchmarkOptions, values)
    return BenchmarkConfig(suite, options.dry_run, Roots(roots.raw.resolve(), roots.preprocessed.resolve(),
                                                         roots.results.resolve()))


@dataclass(frozen=True)
class BenchmarkFolder:
    """``<results>/benchmarks/<suite>/``: the tables, the report, the plots and the train.py logs."""

    path: Path

    @property
    def runs_table(self) -> Path:
        return self.path / "runs.csv"

    @property
    def results_table(self) -> Path:
        return self.path / "results.csv"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def log(self, run: SuiteRun) -> Path:
        return self.path / "logs" / f"{run.dataset}__{run.configuration}__{run.variant}__seed{run.seed}.log"


@dataclass(frozen=True)
class Expansion:
    """The suite's runs as far as its datasets are planned, with their folders."""

    runs: dict[tuple, SuiteRun]
    folders: dict[tuple, RunFolder]
    not_planned: list[tuple[str, str]]  # (dataset, configuration) that nnU-Net's rules did not plan
    unplanned: list[str]  # datasets without plans yet

    @property
    def pending(self) -> list[SuiteRun]:
        return [r for key, r in self.runs.items() if not self.folders[key].stats.is_file()]


def run(config: BenchmarkConfig) -> dict[str, Any]:
    suite, roots = config.suite, config.roots
    roots.export()
    check_variants(suite)
    generate = not config.dry_run
    raw_folders = {d.name: _raw_folder(d, roots.raw, generate) for d in suite.datasets if d.synthetic is None}
    raw_folders |= {d.name: _raw_folder(d, roots.raw, generate) for d in suite.datasets if d.synthetic is not None}
    folder = BenchmarkFolder(roots.results / "benchmarks" / suite.name)
    state = expand(suite, raw_folders, roots)
    if config.dry_run:
        _print_plan(suite, state, raw_folders)
        _print_fairness(suite_fairness(suite, list(state.runs.values())))
        return {"runs": len(state.runs), "pending": len(state.pending)}
    if state.pending or state.unplanned:  # plan (or finish preprocessing) only where there is training to do
        started = time.perf_counter()
        state = expand(suite, raw_folders, roots, plan={r.dataset for r in state.pending} | set(state.unplanned))
        planning = time.perf_counter() - started
        pending = state.pending
        _print_fairness(suite_fairness(suite, list(state.runs.values())))  # before anything trains
        train_pending(suite, pending, folder)
        _print_overhead(planning, time.perf_counter() - started - planning, [state.folders[r.key()] for r in pending])
    else:
        print(f"Suite {suite.name}: all {len(state.runs)} run(s) finished before; only the tables and report are "
              "checked")
    score_new_metrics(suite, state)
    return write_results(suite, state, folder, roots.results)


def _raw_folder(dataset: SuiteDataset, raw_root: Path, generate: bool) -> Path:
    """The dataset's raw folder; a synthetic one is generated if absent and ``generate``, once every real dataset
    was found."""
    if dataset.synthetic is not None:
        target = raw_root / dataset.name
        if generate and not target.is_dir():
            raw_root.mkdir(parents=True, exist_ok=True)
            number, _, name = dataset.name.removeprefix("Dataset").partition("_")
            spec = dict(dataset.synthetic)
            spec["shape"] = tuple(spec.get("shape", (24, 48, 40)))
            make_synthetic_dataset(raw_root, int(number), name, **spec)  # staged, then moved into place
            print(f"Generated the synthetic dataset {target}")
        return target
    folder = resolve_raw_folder(dataset.name, raw_root)
    if not (folder / "dataset.json").is_file():
        raise UserError(f"suite dataset {dataset.name}: {folder / 'dataset.json'} not found (set paths.raw or "
                        "NNLIGHT_RAW to where the raw datasets are)")
    return folder


def check_variants(suite: Suite) -> None:
    """Compose train.py's config for every variant (with a stand-in plan) and plan.py's for every dataset before
    anything runs: an unknown option, key or value is named with its variant or dataset. Overrides of plan values
    are checked once planned."""
    with tempfile.TemporaryDirectory() as scratch:
        stub = Path(scratch) / "plan" / "Dataset000_SuiteCheck" / "stub.yaml"
        stub.parent.mkdir(parents=True)
        stub.write_text("dataset: Dataset000_SuiteCheck\nconfiguration: stub\nplans_name: nnUNetPlans\n")
        for variant in suite.variants:
            overrides = [o for o in [*suite.variant_overrides(variant), *suite.launcher]
                         if not o.lstrip("+~").startswith("plan.")]
            problem = composition_problem(CONFIG_DIR, "train", [
                *overrides, "plan=Dataset000_SuiteCheck/stub", "data.fold=0",
                search_path_override(CONFIG_DIR, "train", user_config_dir(), Path(scratch))])
            if problem:
                raise UserError(f"suite {suite.name}, variant {variant}: {problem}")
    for dataset in suite.datasets:
        for preset in dict.fromkeys(suite.planner(dataset, v) for v in suite.variants):
            problem = composition_problem(CONFIG_DIR, "plan", ["dataset=_", f"planner={preset}", *suite.plan_overrides])
            if problem:
                raise UserError(f"suite {suite.name}, planning {dataset.name}: {problem}")


def _planner(preset: str) -> tuple[str, str]:
    """(plans name, config suffix) of a planner preset (checked to exist by :func:`check_variants`)."""
    settings = plan_stage.parse(compose_config(CONFIG_DIR, "plan", ["dataset=_", f"planner={preset}"])).planner
    return settings.plans_name, settings.config_suffix


def expand(suite: Suite, raw_folders: dict[str, Path], roots: Roots, plan: AbstractSet[str] = frozenset()
           ) -> Expansion:
    """Plan (and preprocess) the datasets named in ``plan`` with every planner preset the suite needs (the
    dataset's, and a variant's own, e.g. ResEnc), then every run of the suite whose (dataset, configuration) the
    planner of its variant planned, with the folder train.py gives it."""
    planned: dict[tuple[str, str], dict[str, str]] = {}
    not_planned: list[tuple[str, str]] = []
    unplanned: list[str] = []
    presets: dict[str, str] = {}
    for dataset in suite.datasets:
        name = raw_folders[dataset.name].name
        presets[name] = dataset.planner
        for preset in dict.fromkeys(suite.planner(dataset, v) for v in suite.variants):
            plans_name, suffix = _planner(preset)
            if name in plan:
                _plan(raw_folders[dataset.name], [f"planner={preset}", *suite.plan_overrides])
            plans_file = roots.preprocessed / name / f"{plans_name}.json"
            if not plans_file.is_file():
                unplanned += [] if name in unplanned else [name]
                continue
            configurations = load_json(plans_file).get("configurations", {})
            for configuration in dataset.configurations:
                if configuration in configurations:
                    planned.setdefault((name, configuration), {})[preset] = \
                        f"{name}/{config_name(configuration, suffix)}"
                elif preset == dataset.planner:
                    not_planned.append((name, configuration))
    runs = {r.key(): r for r in suite_runs(suite, planned, presets)}
    return Expansion(runs, {key: run_folder(run_overrides(suite, r)) for key, r in runs.items()}, not_planned,
                     unplanned)


def _plan(raw_folder: Path, overrides: list[str]) -> None:
    """plan.py in this process: verify, fingerprint (reused), plan, preprocess (cases already done are kept)."""
    print(f"\nPlanning {raw_folder.name} ({' '.join(overrides)}) ...")
    plan_stage.run(plan_stage.parse(compose_config(CONFIG_DIR, "plan", [f"dataset={raw_folder}", *overrides])))


def _print_fairness(notes: Mapping[tuple[tuple[str, str], str], list[str]]) -> None:
    lines = fairness_lines(notes)
    if lines:
        print("\nBeyond their method, these variants train differently from the baseline (the report says so too):\n  "
              + "\n  ".join(lines))
    elif notes:
        print("\nEvery variant trains with the baseline's patch, batch, spacing, iterations, epochs and precision.")


def run_folder(overrides: list[str]) -> RunFolder:
    """The folder train.py gives a run with these overrides (Hydra composes the name, as in train.py)."""
    return RunFolder(train_run_folder(overrides))


def _print_plan(suite: Suite, state: Expansion, raw_folders: dict[str, Path]) -> None:
    """Every run with its state: finished, to train, or to plan first (its folder is known once planned; a
    configuration nnU-Net's rules do not plan for that dataset will be skipped then)."""
    for key, r in state.runs.items():
        status = "finished" if state.folders[key].stats.is_file() else "to train"
        print(f"{status:9s} {r.dataset} / {r.configuration} / {r.variant} / fold {r.fold} / seed {r.seed}: "
              f"{state.folders[key].path}")
    for dataset in suite.datasets:
        name = raw_folders[dataset.name].name
        if name not in state.unplanned:
            continue
        for configuration, variant, seed, fold in itertools.product(dataset.configurations, suite.variants,
                                                                      suite.seeds, suite.folds):
            print(f"to plan   {name} / {configuration} / {variant} / fold {fold} / seed {seed}: trained once "
                  f"{name} is planned (if nnU-Net's rules plan {configuration})")
    pending = len(state.pending)
    print(f"\n{len(state.runs)} run(s) known: {len(state.runs) - pending} finished, {pending} to train"
          + (f"; {len(state.unplanned)} dataset(s) to plan first" if state.unplanned else ""))


def train_pending(suite: Suite, pending: list[SuiteRun], folder: BenchmarkFolder) -> None:
    """One train.py multirun per (dataset, configuration, variant, seed) over its unfinished folds;
    ``parallel_sweeps`` of them at once. A failed sweep is logged; the others go on."""
    groups: dict[tuple, list[SuiteRun]] = defaultdict(list)
    for r in pending:
        groups[(r.dataset, r.configuration, r.variant, r.seed)].append(r)
    queue, done = list(groups.values()), 0
    running: list[tuple[list[SuiteRun], subprocess.Popen[bytes]]] = []
    print(f"\nSuite {suite.name}: {len(pending)} run(s) to train in {len(queue)} train.py sweep(s); logs in "
          f"{folder.path / 'logs'}")
    while queue or running:
        while queue and len(running) < suite.parallel_sweeps:
            runs = queue.pop(0)
            running.append((runs, _start_sweep(suite, runs, folder.log(runs[0]))))
        time.sleep(0.5)
        for entry in [e for e in running if e[1].poll() is not None]:
            running.remove(entry)
            runs, process = entry
            done += 1
            outcome = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode}; see " \
                f"{folder.log(runs[0])})"
            print(f"[{done}/{len(groups)}] {runs[0].dataset} / {runs[0].configuration} / {runs[0].variant} / seed "
                  f"{runs[0].seed}, fold(s) {', '.join(str(r.fold) for r in runs)}: {outcome}")


def _print_overhead(planning: float, training: float, trained: list[RunFolder]) -> None:
    """What the suite machinery costs beside the work itself: the sweeps' wall time less every run's fit and
    validation (process start, Hydra composition, data set-up, checkpoints, writing the run files)."""
    stats = [load_json(f.stats) for f in trained if f.stats.is_file()]
    work = sum(s["train_seconds"] + s["validation_seconds"] for s in stats)
    if stats:
        print(f"\nTimes: planning and checks {planning:.1f} s; training sweeps {training:.1f} s wall for {len(stats)} "
              f"run(s), of which fits + validations {work:.1f} s: {(training - work) / len(stats):.1f} s per run "
              "outside them")


def _start_sweep(suite: Suite, runs: list[SuiteRun], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "nnlight", "train", "-m", *sweep_overrides(suite, runs)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        handle.flush()
        parent = os.getpid()
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: die_with_parent(parent))


def score_new_metrics(suite: Suite, state: Expansion) -> None:
    """A metric added to a suite after its runs finished (an evaluation setting: no run trains again) is scored on
    each finished run's saved validation predictions, as nnlight-train does for such a run."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for key, run in state.runs.items():
        folder = state.folders[key]
        if not folder.stats.is_file() or not folder.validation_summary.is_file():
            continue
        overrides = run_overrides(suite, run)
        if (run.plan, run.variant) not in wanted:
            metrics = resolved_config(compose_config(CONFIG_DIR, "train", overrides)).get("metrics")
            wanted[(run.plan, run.variant)] = {metric_name(m) for m in metric_components(metrics)}
        if wanted[(run.plan, run.variant)] - set(load_json(folder.validation_summary).get("foreground_mean", {})):
            rescore_validation(training_setup(overrides), folder, load_json(folder.stats))


def write_results(suite: Suite, state: Expansion, folder: BenchmarkFolder, results_root: Path) -> dict[str, Any]:
    """The tables, the report and the plots; each file is replaced only if its content changed."""
    run_rows = [run_row(r, state.folders[key], results_root, folder.log(r)) for key, r in state.runs.items()]
    rows = [row for run_row_, key in zip(run_rows, state.runs, strict=True)
            for row in case_rows(run_row_, state.folders[key])]
    results = variant_results(suite, run_rows, rows)
    task_ranks = ranks(results)
    tests = comparisons(suite, results)
    fairness = fairness_lines(suite_fairness(suite, list(state.runs.values())))
    summary = summary_rows(suite, results, tests)
    figures = [(folder.path / f"{name}.{suffix}", data)
               for name, figure in (("per_case_dice", per_case_plot(suite, results)),
                                    ("ranks", rank_plot(suite, task_ranks)))
               for suffix, data in figure_files(figure).items()]
    changed = [path.name for path, data in (
        (folder.runs_table, to_csv(run_rows, RUN_COLUMNS).encode()),
        (folder.results_table, to_csv(rows, case_columns(rows)).encode()),
        (folder.report, report_markdown(suite, run_rows, results, task_ranks, tests, state.not_planned,
                                        fairness).encode()),
        (folder.path / "summary.csv", summary_csv(summary).encode()),
        (folder.path / "summary.tex", summary_latex(suite, summary).encode()),
        *figures,
        (folder.path / "suite.yaml", OmegaConf.to_yaml(OmegaConf.create(_suite_record(suite))).encode()))
        if write_if_changed(path, data)]
    finished = sum(r["status"] == "finished" for r in run_rows)
    missing = len(run_rows) - finished
    print(f"\nSuite {suite.name}: {finished} of {len(run_rows)} run(s) finished"
          + (f", {missing} without a result (listed in the report)" if missing else "")
          + f"\n  report:  {folder.report}\n  tables:  {folder.results_table}, {folder.runs_table}"
          + f"\n  updated: {', '.join(changed) or 'nothing (the results did not change)'}")
    return {"runs": len(run_rows), "finished": finished, "report": str(folder.report)}


def _suite_record(suite: Suite) -> dict[str, Any]:
    return {"name": suite.name, "datasets": [vars(d) | {"configurations": list(d.configurations)}
                                             for d in suite.datasets],
            "folds": list(suite.folds), "seeds": list(suite.seeds), "baseline": suite.baseline,
            "variants": {k: list(v) for k, v in suite.variants.items()}, "budget": suite.budget.overrides(),
            "overrides": list(suite.overrides), "plan_overrides": list(suite.plan_overrides),
            "launcher": list(suite.launcher)}
