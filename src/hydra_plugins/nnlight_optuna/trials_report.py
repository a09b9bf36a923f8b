"""A search's record in its sweep folder: ``trials.csv`` and ``trials.md`` (every trial with its state: finished,
pruned, failed, killed and rerun, running; finished ones best first) and ``trials.png`` with ``.svg`` and ``.pdf``
(value per trial with the best so far, and value against each searched parameter; a pruned trial's last per-epoch
value on an axis of its own, as it is another quantity than the optimized value)."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Any

from nnlight.training.pruning import per_epoch_metric
from nnlight.utils.figures import write_figure
from nnlight.utils.files import atomic_write_text

KILLED = "killed"  # user attribute of a trial cut off by a kill (recorded as failed, its values run again)
RERUN_OF = "rerun_of"  # user attribute of the trial that runs a killed trial's values again: that trial's number


def write_trials_report(study: Any, folder: Path, metric: str) -> None:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    atomic_write_text(folder / "trials.csv", _trials_csv(study))
    intermediate = per_epoch_metric(None if metric == "value" else metric)  # what a trial reports per epoch
    atomic_write_text(folder / "trials.md", _trials_markdown(study, complete, metric, intermediate))
    write_figure(_trials_figure(study, complete, pruned, metric, intermediate), folder / "trials.png")
    print(f"Trials: {folder / 'trials.md'} (table: trials.csv, plot: trials.png, .svg, .pdf)")


def trial_state(trial: Any) -> str:
    """finished, pruned, failed, killed (cut off, run again), running or waiting."""
    if trial.user_attrs.get(KILLED):
        return "killed"
    return {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
            "WAITING": "waiting"}.get(trial.state.name, trial.state.name.lower())


def _note(trial: Any, reruns: dict[int, int], intermediate: str) -> str:
    """What else a reader needs: where a pruned trial stopped, which trial reran a killed one."""
    notes = []
    if trial.number in reruns:
        notes.append(f"rerun as trial {reruns[trial.number]}")
    if RERUN_OF in trial.user_attrs:
        notes.append(f"reruns trial {trial.user_attrs[RERUN_OF]}")
    if "pruned_at_epoch" in trial.user_attrs:
        last = _last_reported(trial)
        value = f", last {intermediate} {last:.4f}" if last is not None else ""
        notes.append(f"pruned at epoch {trial.user_attrs['pruned_at_epoch']}{value}")
    return "; ".join(notes)


def _value(trial: Any) -> float | None:
    """The optimized value: a finished trial's only (Optuna gives a pruned trial its last per-epoch value, which is
    another quantity)."""
    return trial.value if trial_state(trial) == "finished" else None


def _reruns(study: Any) -> dict[int, int]:
    return {int(t.user_attrs[RERUN_OF]): t.number for t in study.trials if RERUN_OF in t.user_attrs}


def _trials_csv(study: Any) -> str:
    buffer = io.StringIO()
    params = sorted({p for t in study.trials for p in t.params})
    reruns = _reruns(study)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", "value", "pruned_at_epoch", "last_per_epoch_value", "rerun_as", "rerun_of",
                     *params])
    for t in study.trials:
        last = _last_reported(t) if trial_state(t) == "pruned" else None
        writer.writerow([t.number, trial_state(t), "" if _value(t) is None else _value(t),
                         t.user_attrs.get("pruned_at_epoch", ""), "" if last is None else last,
                         reruns.get(t.number, ""), t.user_attrs.get(RERUN_OF, ""),
                         *[t.params.get(p, "") for p in params]])
    return buffer.getvalue()


def _trials_markdown(study: Any, complete: list[Any], metric: str, intermediate: str) -> str:
    states = [trial_state(t) for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("pruned", "failed", "killed", "running", "waiting")
                       if states.count(s))
    lines = [f"# Study `{study.study_name}`", "",
             f"{len(complete)} finished trial(s){', ' + counts if counts else ''}, of {len(study.trials)}; "
             f"value: {metric} ({study.direction.name.lower()}d)."]
    names = sorted({p for t in study.trials for p in t.params})
    if complete:
        best = study.best_trial
        lines += ["", f"Best: trial {best.number}, value {best.value:.4f}, "
                  + ", ".join(f"{k}={v}" for k, v in best.params.items())]
    ordered = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    others = [t for t in study.trials if t not in complete]
    reruns = _reruns(study)
    lines += ["", "| trial | state | value | " + " | ".join([*names, "note"]) + " |",
              "|---|---|---|" + "---|" * (len(names) + 1)]
    lines += [f"| {t.number} | {trial_state(t)} | {'' if _value(t) is None else f'{_value(t):.4f}'} | "
              + " | ".join([*(str(t.params.get(k, "")) for k in names), _note(t, reruns, intermediate)]) + " |"
              for t in [*ordered, *others]]
    return "\n".join(lines) + "\n"


def _last_reported(trial: Any) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _trials_figure(study: Any, complete: list[Any], pruned: list[Any], metric: str, intermediate: str) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = sorted({p for t in study.trials for p in t.params})
    columns = 1 + len(names)
    fig = Figure(figsize=(4.2 * columns, 3.8))
    axes = fig.subplots(1, columns, squeeze=False)[0]
    pick = max if study.direction.name == "MAXIMIZE" else min
    values = [t.value for t in complete]
    shown_pruned = [(t, _last_reported(t)) for t in pruned if _last_reported(t) is not None]
    failed = [t for t in study.trials if trial_state(t) in ("failed", "killed")]
    ax = axes[0]
    ax.plot([t.number for t in complete], values, "o", label="finished trial")
    if complete:
        ax.step([t.number for t in complete], [pick(values[: i + 1]) for i in range(len(values))], where="post",
                label="best so far")
    for t in failed:  # no value: a mark at the trial's number
        ax.axvline(t.number, color="red", alpha=0.3, linestyle=":")
    if failed:
        ax.plot([], [], color="red", alpha=0.3, linestyle=":", label="failed / killed (no value)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel=metric, title="value per trial")
    handles, labels = ax.get_legend_handles_labels()
    if shown_pruned:  # another quantity than the optimized value: its own axis
        own = ax.twinx()
        own.plot([t.number for t, _ in shown_pruned], [v for _, v in shown_pruned], "x", color="grey",
                 label=f"pruned: last {intermediate}")
        own.set_ylabel(f"pruned trials: last {intermediate}", color="grey")
        more_handles, more_labels = own.get_legend_handles_labels()
        handles, labels = [*handles, *more_handles], [*labels, *more_labels]
    ax.legend(handles, labels, loc="best", fontsize="small")
    for ax, name in zip(axes[1:], names, strict=True):
        _value_against(ax, name, complete, study)
        ax.set(ylabel=metric)
    states = [trial_state(t) for t in study.trials]
    fig.suptitle("\n".join(textwrap.wrap(
        f"{study.study_name}: " + ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)),
        width=int(40 * columns))), fontsize="medium")
    fig.tight_layout()
    return fig


def _value_against(ax: Any, name: str, complete: list[Any], study: Any) -> None:
    """Finished trials' value against one searched parameter: categories side by side, numbers on a (log where
    searched so) axis."""
    from optuna.distributions import CategoricalDistribution

    distribution = next(t.distributions[name] for t in study.trials if name in t.distributions)
    points = [(t.params[name], t.value) for t in complete if name in t.params]
    if isinstance(distribution, CategoricalDistribution):
        labels = [str(c) for c in distribution.choices]
        points = [(labels.index(str(x)), y) for x, y in points]
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
    elif getattr(distribution, "log", False):
        ax.set_xscale("log")
    if points:
        ax.plot(*zip(*points, strict=True), "o")
    ax.set(xlabel=name, title=f"value against {name}")
