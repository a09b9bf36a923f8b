"""nnlight's Optuna sweeper: the search space from Hydra's sweep syntax, pruning, outcomes and the trials report."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.core.utils import JobStatus

from hydra_plugins.nnlight_optuna.search import (
    OptunaSearch,
    _requeue_killed,
    _tell,
    check_search_settings,
    search_space,
    study_lock,
)
from hydra_plugins.nnlight_optuna.trials_report import write_trials_report
from nnlight.training.pruning import TrialPruning, per_epoch_metric
from nnlight.utils.errors import UserError
from nnlight.utils.locks import process_lock

optuna = pytest.importorskip("optuna", reason="pip install 'nnlight[sweep]'")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

SETTINGS = {"direction": "maximize", "sampler": "tpe", "pruner": "none", "n_trials": 2, "n_jobs": 1,
            "storage": "sqlite:///study.db"}


def test_the_sweep_syntax_becomes_optuna_distributions_and_plain_overrides_stay_fixed() -> None:
    distributions, fixed = search_space([
        "loss=choice(dice_ce, dice)", "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
        "optimizer.momentum=interval(0.9, 0.99)", "data.batch_size=range(2, 9, 2)", "model.depth=int(interval(3, 6))",
        "plan=Dataset900_Demo/2d", "trainer.max_epochs=2"])
    assert distributions == {
        "loss": CategoricalDistribution(["dice_ce", "dice"]),
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer.momentum": FloatDistribution(0.9, 0.99),
        "data.batch_size": IntDistribution(2, 8, step=2),  # range's stop is exclusive
        "model.depth": IntDistribution(3, 6)}
    assert fixed == ["plan=Dataset900_Demo/2d", "trainer.max_epochs=2"]


def test_a_sweep_optuna_cannot_sample_is_refused_naming_it() -> None:
    with pytest.raises(UserError, match=r"loss=glob\(\*\)"):
        search_space(["loss=glob(*)"])


@pytest.mark.parametrize(("key", "value"), [("sampler", "bayes"), ("pruner", "asha"), ("direction", "up")])
def test_an_unknown_sampler_pruner_or_direction_is_refused_naming_the_valid_ones(key: str, value: str) -> None:
    with pytest.raises(UserError, match=rf"hydra.sweeper.{key}={value}: choose one of"):
        check_search_settings({**SETTINGS, key: value})


def test_the_sweep_extra_brings_a_maintained_optuna_and_sqlalchemy_2() -> None:
    import sqlalchemy

    assert int(optuna.__version__.split(".")[0]) >= 4 and int(sqlalchemy.__version__.split(".")[0]) >= 2
    check_search_settings(SETTINGS)  # accepted as installed


@pytest.mark.parametrize(("storage", "message"), [
    ("sqlite:////proc/nnlight/study.db", "/proc cannot be written"),
    ("garbage", "not a database URL"),
    ("sqlite://", "an in-memory study is lost"),
    ("mysql+nosuchdriver://u@h/db", "its database driver is not installed"),
    ("postgresql://user@host/db", "its database driver is not installed"),
])
def test_an_unusable_storage_is_refused_before_the_first_trial(storage: str, message: str) -> None:
    if storage.startswith("postgresql") and importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg is installed here: PostgreSQL's driver is not missing")
    with pytest.raises(UserError, match=r"hydra\.sweeper\.storage=") as refused:
        check_search_settings({**SETTINGS, "storage": storage})
    assert message in str(refused.value)


def test_a_second_search_of_a_study_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Two searches of one study at once failed each other's trials; the second is now refused at once, naming
    the first (an OS lock: a killed search holds nothing)."""
    from omegaconf import OmegaConf

    search = OptunaSearch("maximize", "my_study", f"sqlite:///{tmp_path / 's.db'}", 2, 1, "tpe", None, "none", 1, 1,
                          None)
    search.config = OmegaConf.create({"paths": {"results": str(tmp_path)}})
    with process_lock(study_lock(tmp_path, "my_study"), lambda holder: "held"), \
            pytest.raises(UserError, match=r"study my_study is being searched by process \d+ on host"):
        search.sweep([])
    assert not (tmp_path / "s.db").exists()  # refused before the study was opened
    with pytest.raises(UserError, match="names nothing to search"):  # free again: the search itself starts
        search.sweep([])


def _trainer(value: float, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=epoch, should_stop=False,
                           callback_metrics={"val/pseudo_dice_ema": torch.tensor(value)})


def test_a_trial_clearly_below_the_others_stops_and_is_recorded_as_pruned(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1))
    good = study.ask()
    for epoch in range(3):
        good.report(0.8, epoch)
    study.tell(good, 0.8)

    trial = study.ask()
    pruning = TrialPruning(trial, per_epoch_metric("validation_dice"))
    first = _trainer(0.1, epoch=0)
    pruning.on_validation_end(first, None)  # within the warm-up: reported, never pruned
    assert not first.should_stop and trial.number in {t.number for t in study.trials}
    second = _trainer(0.1, epoch=1)
    pruning.on_validation_end(second, None)
    assert second.should_stop and pruning.pruned_at_epoch == 1
    stored = study.trials[trial.number]
    assert stored.intermediate_values == {0: pytest.approx(0.1), 1: pytest.approx(0.1)}
    assert stored.user_attrs["pruned_at_epoch"] == 1

    finished_run = SimpleNamespace(status=JobStatus.COMPLETED, return_value=0.1, working_dir="run")
    _tell(study, trial, finished_run)  # the run itself finished normally (it stopped early)
    assert study.trials[trial.number].state == optuna.trial.TrialState.PRUNED


def test_a_trial_that_returns_no_value_fails_and_stops_the_search_with_a_reason(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trial = study.ask({"x": FloatDistribution(0, 1)})
    with pytest.raises(UserError, match=r"validation\.enabled=true"):
        _tell(study, trial, SimpleNamespace(status=JobStatus.COMPLETED, return_value=None, working_dir="run"))
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


def test_killed_trials_are_marked_failed_and_their_values_run_again_first(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    space = {"x": FloatDistribution(0, 1)}
    killed = study.ask(space)
    _requeue_killed(study)
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL
    rerun = study.ask(space)
    assert rerun.params == killed.params
    study.tell(rerun, 0.5)
    write_trials_report(study, tmp_path, "validation_dice")  # the killed trial and its rerun are both listed
    table = (tmp_path / "trials.md").read_text()
    assert "1 finished trial(s), 1 killed, of 2" in table
    assert "| 0 | killed |  | " in table and "rerun as trial 1 |" in table and "reruns trial 0 |" in table
    assert "0,killed,,,,1," in (tmp_path / "trials.csv").read_text()


def test_the_trials_report_lists_finished_and_pruned_trials_and_plots_each_parameter(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="Dataset900_Demo_2d_fold0_search", direction="maximize")
    space = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True), "loss": CategoricalDistribution(["a", "b"])}
    for number in range(4):
        trial = study.ask(space)
        trial.report(0.1 * number, 0)
        if number == 1:
            trial.set_user_attr("pruned_at_epoch", 0)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.1 * number)
    write_trials_report(study, tmp_path, "validation_dice")
    table = (tmp_path / "trials.md").read_text()
    assert "3 finished trial(s), 1 pruned, of 4" in table and "value: validation_dice (maximized)" in table
    assert "Best: trial 3, value 0.3000" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 3", "| 2", "| 0", "| 1"]  # finished best first, then the rest
    assert rows[-1].startswith("| 1 | pruned |  |") and "pruned at epoch 0, last val/pseudo_dice_ema 0.1000" in rows[-1]
    header = (tmp_path / "trials.csv").read_text().splitlines()[0]
    assert header == "trial,state,value,pruned_at_epoch,last_per_epoch_value,rerun_as,rerun_of,loss,optimizer.lr"
    from matplotlib.image import imread

    height, width, _ = imread(tmp_path / "trials.png").shape
    assert width > 2.5 * height  # value per trial beside value against each of the 2 parameters
