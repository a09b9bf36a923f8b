"""Hydra's Optuna sweeper, made resumable: ``n_trials`` counts every finished trial of the stored study, so a
killed search run again only runs the trials still missing (the study lives in SQLite under the results
folder), with a freshly seeded sampler so that it does not propose the first trials' values again. Trials that
were running when the search was killed are marked failed. At the end the trials are
written to the sweep's folder as a table, a summary with the best trial, and a plot.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

try:  # the extra nnlight[sweep]; without it Hydra has no Optuna sweeper and neither is this one defined
    import optuna
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # pragma: no cover - depends on the installed extras
    OptunaSweeper = None  # type: ignore[assignment,misc]


def _study(storage: str | None, name: str | None) -> Any:
    if not storage or not name:
        return None
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # no such study yet
        return None


def _trials_csv(study: Any) -> str:
    buffer = io.StringIO()
    params = sorted({p for t in study.trials for p in t.params})
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", "value", *params])
    for t in study.trials:
        writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                         *[t.params.get(p, "") for p in params]])
    return buffer.getvalue()


def _write_summary(study: Any, folder: Path) -> None:
    """trials.csv, trials.md (best trial first) and trials.png (value per trial, best so far)."""
    from matplotlib.figure import Figure

    from nnlight.utils.files import atomic_write, atomic_write_text

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    atomic_write_text(folder / "trials.csv", _trials_csv(study))
    lines = [f"# Study `{study.study_name}`", "", f"{len(done)} finished trial(s) of {len(study.trials)}."]
    if done:
        best = study.best_trial
        lines += ["", f"Best: trial {best.number}, value {best.value:.4f}, "
                  + ", ".join(f"{k}={v}" for k, v in best.params.items()), "",
                  "| trial | value | " + " | ".join(best.params) + " |", "|---|---|" + "---|" * len(best.params)]
        lines += [f"| {t.number} | {t.value:.4f} | " + " | ".join(str(t.params.get(k, "")) for k in best.params)
                  + " |" for t in sorted(done, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")]
    atomic_write_text(folder / "trials.md", "\n".join(lines) + "\n")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    values = [t.value for t in done]
    pick = max if study.direction.name == "MAXIMIZE" else min
    ax.plot([t.number for t in done], values, "o", label="trial")
    ax.step([t.number for t in done], [pick(values[: i + 1]) for i in range(len(values))], where="post",
            label="best so far")
    ax.set(xlabel="trial", ylabel="objective", title=f"{study.study_name}: {len(done)} finished trial(s)")
    ax.legend(loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    atomic_write(folder / "trials.png", lambda f: f.write(buffer.getvalue()))
    print(f"Trials: {folder / 'trials.md'} (table: trials.csv, plot: trials.png)")


if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """``hydra.sweeper._target_`` of nnlight's ``hparams_search`` configs."""

        def sweep(self, arguments: list[str]) -> None:
            impl = self.sweeper
            study = _study(impl.storage, impl.study_name)
            finished = 0
            if study is not None:
                for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    # killed: its values run again first, so its run folder resumes from its last checkpoint (or,
                    # killed after its run finished, reports that run) instead of a new trial starting over
                    study._storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
                    if trial.params:  # killed before Optuna chose its values: nothing to run again
                        study.enqueue_trial(trial.params)
                finished = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            if study is not None and study.trials and hasattr(impl.sampler, "reseed_rng"):
                impl.sampler.reseed_rng()  # the seeded sampler would propose the first trials' values again
            total, impl.n_trials = impl.n_trials, max(impl.n_trials - finished, 0)
            print(f"Study {impl.study_name}: {finished} of {total} trial(s) finished before; running {impl.n_trials}")
            if impl.n_trials:
                super().sweep(arguments)
            study = _study(impl.storage, impl.study_name)
            if study is not None:
                _write_summary(study, Path(str(impl.config.hydra.sweep.dir)))
