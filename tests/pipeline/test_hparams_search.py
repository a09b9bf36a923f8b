"""hparams_search=...: an Optuna study (Optuna >= 4, SQLAlchemy 2) stored under the results folder, resumed after a
kill, each trial reporting its per-epoch validation value to the pruner."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnlight.pipeline.cli import compose_config
from nnlight.pipeline.config_dir import CONFIG_DIR
from tests.conftest import REPO, TINY_BUDGET, Roots, planned_demo, run_script

pytestmark = pytest.mark.cli

optuna = pytest.importorskip("optuna", reason="pip install 'nnlight[sweep]'")

# the median pruner lets its first 5 trials finish: these 2 only report their values
SEARCH = ["hparams_search=lr_weight_decay", "plan=Dataset900_Demo/2d", "hydra.sweeper.n_trials=2", *TINY_BUDGET,
          "validation.mirroring=false", "hydra.sweeper.pruner=median"]


def test_a_killed_search_resumes_from_its_study(planned_demo_template: Roots, tmp_path: Path) -> None:
    roots = planned_demo(planned_demo_template, tmp_path)
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *SEARCH], cwd=REPO, env=roots.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None and not list(roots.results.rglob("run_stats.json")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list(roots.results.rglob("run_stats.json"))) < 2, "the search finished before it could be killed"
    storage = f"sqlite:///{roots.results / 'sweeps' / 'optuna' / 'Dataset900_Demo_2d_fold0_lr_weight_decay.db'}"
    name = "Dataset900_Demo_2d_fold0_lr_weight_decay"
    killed = [t.params for t in optuna.load_study(study_name=name, storage=storage).trials
              if t.state == optuna.trial.TrialState.RUNNING]

    resumed = run_script("train.py", *SEARCH, roots=roots)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "of 2 trial(s) finished before; running" in resumed.stdout
    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2  # the finished trial kept, only the missing ones run
    # a killed trial's values run again (those it had: a kill between Optuna's ask and its last suggestion leaves
    # fewer, and one with none is only marked failed)
    assert all(any(params.items() <= t.params.items() for t in complete) for params in killed), \
        (killed, [t.params for t in complete])
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(list(roots.results.rglob("run_stats.json"))) == 2  # one run folder per finished trial
    # each epoch's pseudo Dice went to the pruner: both epochs of a trial that trained from the start (a killed
    # trial's rerun reports the epochs it trains after resuming, none if its run had finished before the kill)
    assert any(len(t.intermediate_values) == 2 for t in complete), [t.intermediate_values for t in complete]
    sweeps = sorted((roots.results / "sweeps").glob("20*"))
    assert len(sweeps) == 2  # each sweep keeps its own record
    summary = (sweeps[-1] / "trials.md").read_text()
    assert "2 finished trial(s)" in summary and "Best: trial" in summary and (sweeps[-1] / "trials.png").is_file()
    # each trial's value is what the README says the search optimizes: its run's end-of-training validation Dice
    dice = sorted(round(json.loads(p.read_text())["summary"]["validation_dice"], 6)
                  for p in roots.results.rglob("run_stats.json"))
    assert sorted(round(t.value, 6) for t in complete) == dice


def test_an_unknown_sampler_is_refused_before_anything_runs(planned_demo_template: Roots, tmp_path: Path) -> None:
    roots = planned_demo(planned_demo_template, tmp_path)
    result = run_script("train.py", *SEARCH, "hydra.sweeper.sampler=bayes", roots=roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hydra.sweeper.sampler=bayes: choose one of tpe, random, cmaes, qmc, grid" in result.stderr
    assert not list(roots.results.rglob("*.db"))


@pytest.mark.parametrize("search", sorted(p.stem for p in (REPO / "configs" / "hparams_search").glob("*.yaml")))
def test_the_search_optimizes_the_metric_the_readme_names(search: str, planned_demo_template: Roots,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A search config's ``optimized_metric`` wins over train.yaml's default (``_self_`` comes first there)."""
    section = (REPO / "README.md").read_text().split("### Hyperparameter search", 1)[1].split("\n## ", 1)[0]
    named = re.search(r"optimized_metric=(\w+)", section)
    assert named is not None, "the README's Hyperparameter search section names no optimized_metric"
    monkeypatch.setenv("NNLIGHT_PREPROCESSED", str(planned_demo_template.preprocessed))
    cfg = compose_config(CONFIG_DIR, "train", [f"hparams_search={search}", "plan=Dataset900_Demo/2d"])
    assert cfg.optimized_metric == named.group(1) == "validation_dice"
