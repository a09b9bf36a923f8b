"""nnlight's Hydra sweeper for ``hparams_search``: an Optuna study driven through its ask-and-tell API.

It replaces hydra-optuna-sweeper, whose last release (2022) pins Optuna 2 and SQLAlchemy 1. The study lives in
SQLite under the results folder and ``n_trials`` counts the finished trials, so a killed search run again only runs
the missing ones: a trial the kill cut off first, with its values (its run folder then resumes from its last
checkpoint). With a pruner, each trial reports its per-epoch validation value and a clearly bad one stops early.
The search space keeps Hydra's sweep syntax: ``choice(a, b)``, ``range(1, 8)``, ``interval(0.1, 1)``,
``tag(log, interval(1e-4, 1e-1))``, and ``int(interval(2, 8))`` for whole numbers (Hydra reads an interval's bounds as
floats).

Optuna is imported only when a search runs: Hydra imports every module here when it looks for plugins, and nnlight
works without the ``sweep`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.nnlight_optuna.trials_report import KILLED, RERUN_OF, write_trials_report
from nnlight.utils.errors import UserError
from nnlight.utils.files import writable_folder_problem
from nnlight.utils.locks import held_by, process_lock
from nnlight.utils.names import folder_name

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# how the sweeper tells a job which trial it runs (the job's pruning callback reports to it)
TRIAL_ENV = "NNLIGHT_OPTUNA_TRIAL"


def check_search_settings(sweeper: Mapping[str, Any]) -> None:
    """Refuse an unknown sampler, pruner or direction, or a missing Optuna, before anything runs."""
    for key, valid in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("direction", DIRECTIONS)):
        if str(sweeper.get(key)) not in valid:
            raise UserError(f"hydra.sweeper.{key}={sweeper.get(key)}: choose one of {', '.join(valid)}")
    if int(sweeper.get("n_trials", 0)) < 1 or int(sweeper.get("n_jobs", 1)) < 1:
        raise UserError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be at least 1")
    try:
        import optuna
    except ImportError:
        raise UserError('hparams_search needs Optuna: pip install "nnlight[sweep]"') from None
    if int(optuna.__version__.split(".")[0]) < 4:
        raise UserError(f"hparams_search needs Optuna 4 or newer (installed: {optuna.__version__}): "
                        'pip install -U "nnlight[sweep]"')
    problem = storage_problem(str(sweeper.get("storage")))
    if problem:
        raise UserError(f"hydra.sweeper.storage={sweeper.get('storage')}: {problem}")


def storage_problem(storage: str) -> str | None:
    """Why the study's storage cannot be used, found before the first trial: not a database URL, a database driver
    that is not installed, or an SQLite file in a folder that cannot be written."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(storage)
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as e:  # (NoSuchModuleError is an ArgumentError: first)
        return f"its database driver is not installed ({e}); install it, or use sqlite:///<path>.db"
    except (ArgumentError, ValueError):
        return "not a database URL; use sqlite:///<path>.db (or a database server's URL)"
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return "an in-memory study is lost when the search ends; use sqlite:///<path>.db"
        problem = writable_folder_problem(Path(url.database).parent)
        if problem:
            return f"{problem}; put the study where you can write"
    return None


def study_lock(results: Path, study_name: str) -> Path:
    """The lock one search of ``study_name`` holds while it runs."""
    return results / "sweeps" / "optuna" / f"{folder_name(study_name, 'hydra.sweeper.study_name')}.lock"


def search_space(arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Optuna distributions for the sweep overrides, and the plain overrides every trial gets unchanged."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        key, value = override.get_key_element(), override.value()
        if not override.is_sweep_override():
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
        elif isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
            distributions[key] = CategoricalDistribution(_choices(override))
        elif isinstance(value, RangeSweep):
            distributions[key] = _range_distribution(value, str(override.input_line))
        elif isinstance(value, IntervalSweep):
            if value.start is None or value.end is None:
                raise UserError(f"{override.input_line}: an interval needs both ends")
            log = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                distributions[key] = IntDistribution(value.start, value.end, log=log)
            else:
                distributions[key] = FloatDistribution(float(value.start), float(value.end), log=log)
        else:
            raise UserError(f"{override.input_line}: an Optuna search takes choice(...), range(...), interval(...) "
                            "or tag(log, interval(...))")
    return distributions, fixed


def _range_distribution(value: RangeSweep, line: str) -> Any:
    """``range(start, stop, step)`` as Optuna's distribution: range's stop is exclusive, Optuna's high inclusive."""
    from optuna.distributions import FloatDistribution, IntDistribution

    start, stop, step = value.start, value.stop, value.step
    if start is None or stop is None:
        raise UserError(f"{line}: a range needs its start and stop")
    last = start + step * (math.ceil((stop - start) / step - 1e-9) - 1)
    if isinstance(start, int) and isinstance(stop, int) and isinstance(step, int):
        return IntDistribution(start, int(last), step=step)
    return FloatDistribution(start, last, step=step)


def _choices(override: Override) -> list[Any]:
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    for choice in choices:
        if not isinstance(choice, str | int | float | bool | type(None)):
            raise UserError(f"{override.input_line}: a choice must be a plain value, not {choice!r}")
    return choices


def _sampler(name: str, seed: int | None, distributions: Mapping[str, Any]) -> Any:
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler({key: _grid_values(key, d) for key, d in distributions.items()}, seed=seed)
    made = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler}
    return made[name](seed=seed)


def _grid_values(key: str, distribution: Any) -> list[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if distribution.step is None:
        raise UserError(f"{key}: sampler=grid needs choice(...) or range(...), not a continuous interval")
    count = round((distribution.high - distribution.low) / distribution.step) + 1
    return [distribution.low + i * distribution.step for i in range(count)]


def make_pruner(name: str, startup_trials: int, warmup_epochs: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(warmup_epochs, 1))
    return optuna.pruners.NopPruner()


def _override_value(value: Any) -> str:
    """A sampled value as an override Hydra parses back to the same value."""
    return repr(value) if isinstance(value, float) else str(value)


class OptunaSearch(Sweeper):
    """``hydra.sweeper`` of ``hparams_search`` (configs/hydra/sweeper/nnlight_optuna.yaml)."""

    def __init__(self, direction: str, study_name: str, storage: str, n_trials: int, n_jobs: int, sampler: str,
                 seed: int | None, pruner: str, pruner_startup_trials: int, pruner_warmup_epochs: int,
                 params: DictConfig | None) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.sampler_name, self.seed = n_trials, n_jobs, sampler, seed
        self.pruner_name, self.pruner_startup_trials = pruner, pruner_startup_trials
        self.pruner_warmup_epochs = pruner_warmup_epochs
        self.params: Mapping[str, Any] = params or {}
        self.job_index = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config: DictConfig = config
        self.launcher: Launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        """One search of the study at a time: a second one is refused with who runs the first (two at once would
        fail each other's running trials)."""
        lock = study_lock(Path(str(self.config.paths.results)), self.study_name)
        with process_lock(lock, lambda holder: (
                f"study {self.study_name} is being searched by {held_by(holder)}; wait for it to finish (or stop "
                "it), then run the same command again: the study resumes where it stands")):
            self._search(arguments)

    def _search(self, arguments: list[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # nnlight prints what a researcher needs
        distributions, fixed = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        if not distributions:
            raise UserError("hparams_search: hydra.sweeper.params names nothing to search (e.g. "
                            "optimizer.lr: tag(log, interval(1e-4, 1e-1)))")
        if self.storage.startswith("sqlite:///"):
            Path(self.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        pruner = make_pruner(self.pruner_name, self.pruner_startup_trials, self.pruner_warmup_epochs)
        direction: Literal["maximize", "minimize"] = "maximize" if self.direction == "maximize" else "minimize"
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction=direction,
                                    load_if_exists=True, pruner=pruner,
                                    sampler=_sampler(self.sampler_name, None, distributions))
        earlier = len(study.trials)
        _requeue_killed(study)
        # a seeded sampler started again would propose the first trials' values again: its seed moves on
        study.sampler = _sampler(self.sampler_name, None if self.seed is None else self.seed + earlier, distributions)
        finished = _finished(study)
        remaining = max(self.n_trials - finished, 0)
        print(f"Study {self.study_name}: {finished} of {self.n_trials} trial(s) finished before; running {remaining}")
        while remaining > 0:
            trials = [study.ask(distributions) for _ in range(min(self.n_jobs, remaining))]
            overrides = [(*fixed, *(f"{k}={_override_value(v)}" for k, v in t.params.items()),
                          *self._pruning_override(t)) for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_index)
            self.job_index += len(returns)
            for trial, job in zip(trials, returns, strict=True):
                _tell(study, trial, job)
            remaining -= len(trials)
        folder = Path(str(self.config.hydra.sweep.dir))
        metric = str(self.config.get("optimized_metric") or "value")
        write_trials_report(optuna.load_study(study_name=self.study_name, storage=self.storage), folder, metric)


    def _pruning_override(self, trial: Any) -> tuple[str, ...]:
        """The trial's id for the job's pruning callback (a Hydra setting: it stays out of the run's name)."""
        if self.pruner_name == "none":
            return ()
        return (f"+hydra.job.env_set.{TRIAL_ENV}={trial._trial_id}",)


def _requeue_killed(study: Any) -> None:
    """Trials still RUNNING were cut off by a kill: marked failed (and ``killed``, for the report), and their values
    run again first (the new trial says which one it reruns)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna.trial.Trial(study, trial._trial_id).set_user_attr(KILLED, True)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if trial.params:  # killed before its values were chosen: nothing to run again
            study.enqueue_trial(trial.params, user_attrs={RERUN_OF: trial.number})


def _finished(study: Any) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _tell(study: Any, trial: Any, job: Any) -> None:
    """Record a job's outcome: pruned (its callback marked it), complete with its value, or failed — and then the
    search stops with the job's own error (no trial is silently dropped)."""
    import optuna

    if "pruned_at_epoch" in study.trials[trial.number].user_attrs:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    if job.status != JobStatus.COMPLETED:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        job.return_value  # noqa: B018 - raises the job's exception, with its traceback
    value = job.return_value
    if value is None or not math.isfinite(float(value)):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise UserError(f"trial {trial.number} ({job.working_dir}) returned {value} for optimized_metric: a search "
                        "needs validation on (validation.enabled=true) and a run that is not a debug run")
    study.tell(trial, float(value))

