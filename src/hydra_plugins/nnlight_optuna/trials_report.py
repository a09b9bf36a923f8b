"""A search's record in its sweep folder: ``trials.csv`` (every trial), ``trials.md`` (finished trials, best first)
and ``trials.png`` (value per trial with the best so far, and value against each searched parameter)."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Any

from nnlight.utils.files import atomic_write_bytes, atomic_write_text


def write_trials_report(study: Any, folder: Path, metric: str) -> None:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    atomic_write_text(folder / "trials.csv", _trials_csv(study))
    atomic_write_text(folder / "trials.md", _trials_markdown(study, complete, pruned, metric))
    atomic_write_bytes(folder / "trials.png", _trials_png(study, complete, pruned, metric))
    print(f"Trials: {folder / 'trials.md'} (table: trials.csv, plot: trials.png)")


def _trials_csv(study: Any) -> str:
    buffer = io.StringIO()
    params = sorted({p for t in study.trials for p in t.params})
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", "value", "pruned_at_epoch", *params])
    for t in study.trials:
        writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                         t.user_attrs.get("pruned_at_epoch", ""), *[t.params.get(p, "") for p in params]])
    return buffer.getvalue()


def _trials_markdown(study: Any, complete: list[Any], pruned: list[Any], metric: str) -> str:
    lines = [f"# Study `{study.study_name}`", "",
             f"{len(complete)} finished trial(s), {len(pruned)} pruned, of {len(study.trials)}; "
             f"value: {metric} ({study.direction.name.lower()}d)."]
    if complete:
        best = study.best_trial
        names = sorted({p for t in study.trials for p in t.params})
        lines += ["", f"Best: trial {best.number}, value {best.value:.4f}, "
                  + ", ".join(f"{k}={v}" for k, v in best.params.items()), "",
                  "| trial | value | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        ordered = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        lines += [f"| {t.number} | {t.value:.4f} | " + " | ".join(str(t.params.get(k, "")) for k in names) + " |"
                  for t in ordered]
        lines += [f"| {t.number} | pruned at epoch {t.user_attrs.get('pruned_at_epoch', '?')} | "
                  + " | ".join(str(t.params.get(k, "")) for k in names) + " |" for t in pruned]
    return "\n".join(lines) + "\n"


def _last_reported(trial: Any) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _trials_png(study: Any, complete: list[Any], pruned: list[Any], metric: str) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = sorted({p for t in study.trials for p in t.params})
    columns = 1 + len(names)
    fig = Figure(figsize=(4.2 * columns, 3.8))
    axes = fig.subplots(1, columns, squeeze=False)[0]
    pick = max if study.direction.name == "MAXIMIZE" else min
    values = [t.value for t in complete]
    shown_pruned = [(t, _last_reported(t)) for t in pruned if _last_reported(t) is not None]
    ax = axes[0]
    ax.plot([t.number for t in complete], values, "o", label="finished trial")
    if complete:
        ax.step([t.number for t in complete], [pick(values[: i + 1]) for i in range(len(values))], where="post",
                label="best so far")
    if shown_pruned:
        ax.plot([t.number for t, _ in shown_pruned], [v for _, v in shown_pruned], "x", color="grey",
                label="pruned (last epoch's value)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel=metric, title="value per trial")
    ax.legend(loc="best", fontsize="small")
    for ax, name in zip(axes[1:], names, strict=True):
        _value_against(ax, name, complete, shown_pruned, study)
        ax.set(ylabel=metric)
    fig.suptitle("\n".join(textwrap.wrap(f"{study.study_name}: {len(complete)} finished, {len(pruned)} pruned",
                                         width=int(40 * columns))), fontsize="medium")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _value_against(ax: Any, name: str, complete: list[Any], pruned: list[tuple[Any, float | None]], study: Any
                   ) -> None:
    """Value against one searched parameter: categories side by side, numbers on a (log where searched so) axis."""
    from optuna.distributions import CategoricalDistribution

    distribution = next(t.distributions[name] for t in study.trials if name in t.distributions)
    points = [(t.params[name], t.value) for t in complete if name in t.params]
    cut = [(t.params[name], v) for t, v in pruned if name in t.params]
    if isinstance(distribution, CategoricalDistribution):
        labels = [str(c) for c in distribution.choices]
        points = [(labels.index(str(x)), y) for x, y in points]
        cut = [(labels.index(str(x)), y) for x, y in cut]
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
    elif getattr(distribution, "log", False):
        ax.set_xscale("log")
    if points:
        ax.plot(*zip(*points, strict=True), "o")
    if cut:
        ax.plot(*zip(*cut, strict=True), "x", color="grey")
    ax.set(xlabel=name, title=f"value against {name}")
