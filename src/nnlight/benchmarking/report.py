"""The suite's report: per dataset mean ± std over folds per variant (with how many folds and cases stand behind
each number), a Decathlon-style rank-then-aggregate, paired per-case tests against the baseline, compute cost,
and two plots. Incomplete cross-validations are shown, marked, and left out of ranks and tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import rankdata, wilcoxon

from nnlight.benchmarking.suite import Suite

Task = tuple[str, str]  # (dataset, configuration)


@dataclass(frozen=True)
class VariantResult:
    """One variant on one task: the finished runs' foreground scores and the per-case Dice."""

    runs_expected: int
    runs_finished: int
    dice_per_run: list[float]
    hd95_per_run: list[float]
    nsd_per_run: list[float]
    own_per_run: dict[str, list[float]]  # a user's metrics (the metrics group): name -> foreground mean per run
    case_dice: dict[str, float]  # case -> Dice (mean over labels, then over seeds)
    train_seconds: float
    seconds_per_epoch: list[float]
    peak_host_mb: float | None
    peak_device_mb: float | None
    parameters: int | None

    @property
    def complete(self) -> bool:
        return self.runs_finished == self.runs_expected


@dataclass(frozen=True)
class Comparison:
    task: Task
    variant: str
    cases: int
    mean_difference: float  # variant − baseline, Dice
    rank_biserial: float  # matched-pairs effect size in [-1, 1]; > 0: the variant is better
    p_value: float
    p_holm: float = float("nan")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _foreground(rows: Sequence[Mapping[str, Any]], metric: str) -> float:
    """nnU-Net's foreground mean: per label the mean over cases, then the mean over labels."""
    per_label: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_label[row["label"]].append(float(row[metric]) if row[metric] not in (None, "") else float("nan"))
    return _nanmean([_nanmean(v) for v in per_label.values()])


def variant_results(suite: Suite, runs: Sequence[Mapping[str, Any]], cases: Sequence[Mapping[str, Any]]
                    ) -> dict[Task, dict[str, VariantResult]]:
    by_run: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in cases:
        by_run[(row["dataset"], row["configuration"], row["variant"], row["fold"], row["seed"])].append(row)
    grouped: dict[Task, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        grouped[(run["dataset"], run["configuration"])][run["variant"]].append(run)
    results: dict[Task, dict[str, VariantResult]] = {}
    for task, variants in grouped.items():
        results[task] = {}
        for variant in suite.variants:
            finished = [r for r in variants.get(variant, []) if r["status"] == "finished"]
            rows = [by_run[(r["dataset"], r["configuration"], r["variant"], r["fold"], r["seed"])] for r in finished]
            per_case: dict[str, list[float]] = defaultdict(list)
            for run_rows in rows:
                by_case: dict[str, list[float]] = defaultdict(list)
                for row in run_rows:
                    by_case[row["case"]].append(float(row["Dice"]) if row["Dice"] not in (None, "") else np.nan)
                for case, values in by_case.items():
                    per_case[case].append(_nanmean(values))
            results[task][variant] = VariantResult(
                runs_expected=len(suite.folds) * len(suite.seeds), runs_finished=len(finished),
                dice_per_run=[_foreground(r, "Dice") for r in rows],
                hd95_per_run=[_foreground(r, "HD95") for r in rows], nsd_per_run=[_foreground(r, "NSD") for r in rows],
                own_per_run={m: [_foreground(r, m) for r in rows]
                              for m in dict.fromkeys(k for r in rows for row in r for k in row.get("own_metrics", ()))},
                case_dice={c: _nanmean(v) for c, v in sorted(per_case.items())},
                train_seconds=float(sum(r["train_seconds"] or 0 for r in finished)),
                seconds_per_epoch=[r["seconds_per_epoch"] for r in finished if r["seconds_per_epoch"]],
                peak_host_mb=max((r["peak_host_memory_mb"] for r in finished), default=None),
                peak_device_mb=max((r["peak_device_memory_mb"] for r in finished if r["peak_device_memory_mb"]),
                                   default=None),
                parameters=finished[0]["parameters"] if finished else None)
    return results


def ranks(results: Mapping[Task, Mapping[str, VariantResult]]) -> dict[Task, dict[str, float]]:
    """Per task, rank 1 = highest mean Dice among the variants with a complete cross-validation (ties share)."""
    out = {}
    for task, variants in results.items():
        complete = [(v, _nanmean(r.dice_per_run)) for v, r in variants.items() if r.complete]
        if complete:
            order = rankdata([-(d if not np.isnan(d) else -1.0) for _, d in complete])
            out[task] = {v: float(rank) for (v, _), rank in zip(complete, order, strict=True)}
    return out


def paired_comparison(task: Task, variant: str, result: VariantResult, baseline: VariantResult) -> Comparison | None:
    """Wilcoxon signed-rank test on the cases both predicted; None if they share no case."""
    common = sorted(set(result.case_dice) & set(baseline.case_dice))
    differences = np.array([result.case_dice[c] - baseline.case_dice[c] for c in common])
    differences = differences[~np.isnan(differences)]
    if differences.size == 0:
        return None
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return Comparison(task, variant, int(differences.size), 0.0, 0.0, 1.0)
    signed_ranks = rankdata(np.abs(nonzero)) * np.sign(nonzero)
    effect = float(signed_ranks.sum() / np.abs(signed_ranks).sum())
    p_value = float(wilcoxon(differences, zero_method="wilcox").pvalue)
    return Comparison(task, variant, int(differences.size), float(differences.mean()), effect, p_value)


def holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm–Bonferroni step-down adjusted p-values over every comparison of the suite."""
    order = sorted(range(len(comparisons)), key=lambda i: comparisons[i].p_value)
    adjusted, running = [0.0] * len(comparisons), 0.0
    for position, i in enumerate(order):
        running = max(running, min(1.0, (len(comparisons) - position) * comparisons[i].p_value))
        adjusted[i] = running
    return [Comparison(c.task, c.variant, c.cases, c.mean_difference, c.rank_biserial, c.p_value, adjusted[i])
            for i, c in enumerate(comparisons)]


def comparisons(suite: Suite, results: Mapping[Task, Mapping[str, VariantResult]]) -> list[Comparison]:
    found = []
    for task, variants in results.items():
        baseline = variants[suite.baseline]
        for variant, result in variants.items():
            if variant != suite.baseline and result.complete and baseline.complete:
                comparison = paired_comparison(task, variant, result, baseline)
                if comparison is not None:
                    found.append(comparison)
    return holm(found)


def _mean_std(values: Sequence[float], digits: int = 4) -> str:
    finite = [v for v in values if not np.isnan(v)]
    if not finite:
        return "–"
    spread = f" ± {np.std(finite, ddof=1):.{digits}f}" if len(finite) > 1 else ""
    return f"{np.mean(finite):.{digits}f}{spread}"


def _task_name(task: Task) -> str:
    return f"{task[0]} / {task[1]}"


def report_markdown(suite: Suite, runs: Sequence[Mapping[str, Any]],
                    results: Mapping[Task, Mapping[str, VariantResult]], task_ranks: Mapping[Task, Mapping[str, float]],
                    tests: Sequence[Comparison], not_planned: Sequence[Task], fairness: Sequence[str] = ()) -> str:
    """``fairness``: one line per variant and task that trains differently from the baseline beyond its method."""
    sections = [_header(suite, runs, len(results), not_planned), _fairness(suite, results, fairness),
                *(_task_table(suite, task, variants) for task, variants in results.items()),
                _ranking_table(suite, task_ranks), _comparison_table(suite, tests), _without_result(runs),
                ["Plots: `per_case_dice.png` (per-case Dice by variant), `ranks.png` (rank heat map), each also as "
                 "`.svg` and `.pdf` at a journal column's width. Tables: `summary.csv` and `summary.tex` (booktabs: "
                 "mean ± std, n, significance marks), `results.csv` (per case and label), `runs.csv` (per run)."]]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def _header(suite: Suite, runs: Sequence[Mapping[str, Any]], tasks: int, not_planned: Sequence[Task]) -> list[str]:
    finished = [r for r in runs if r["status"] == "finished"]
    deterministic = sum(1 for r in finished if r["deterministic"])
    revisions = sorted({f"{r['nnlight_version']} @ " + (str(r["git_revision"])[:10] if r["git_revision"] else
                                                          "installed package (no git checkout)")
                        + (" (uncommitted changes)" if r["git_uncommitted_changes"] else "")
                        for r in finished})
    budget = ", ".join(suite.budget.overrides()) or "nnU-Net's full schedule (1000 epochs × 250 iterations)"
    lines = [f"# Benchmark suite `{suite.name}`", "", *([suite.description.strip(), ""] if suite.description else []),
             f"- **Runs**: {len(finished)} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
             f"{sum(r['status'] == 'not finished' for r in runs)} not finished, of {len(runs)} ({tasks} "
             f"dataset/configuration pair(s) × {len(suite.variants)} variant(s) × {len(suite.folds)} fold(s) × "
             f"{len(suite.seeds)} seed(s)).",
             f"- **Baseline**: `{suite.baseline}`. Variants: " + "; ".join(
                 f"`{v}` = {' '.join(o) or '(the baseline recipe)'}"
                 + (f" on the {suite.variant_planners[v]} planner's plans" if v in suite.variant_planners else "")
                 for v, o in suite.variants.items()) + ".",
             f"- **Budget**: {budget}. Every run: {' '.join(suite.overrides) or 'no further overrides'}.",
             f"- **Deterministic** (trainer.deterministic=true): {deterministic} of {len(finished)} finished run(s).",
             f"- **Software**: nnlight {', '.join(revisions) or '–'}; device(s): "
             f"{', '.join(sorted({str(r['device']) for r in finished})) or '–'}.",
             f"- **Training time**: {sum(r['train_seconds'] or 0 for r in finished) / 60:.1f} min in total.", ""]
    if not_planned:
        lines += ["Not planned by nnU-Net's rules for that dataset (so not run): "
                  + ", ".join(_task_name(t) for t in not_planned) + ".", ""]
    return [*lines, "Dice, HD95 and NSD are foreground means (per label over the fold's validation cases, then over "
            "labels), given as mean ± std over folds and seeds. A variant whose cross-validation is incomplete is "
            "marked and takes no part in ranks or tests."]


def _fairness(suite: Suite, results: Mapping[Task, Mapping[str, VariantResult]], lines: Sequence[str]) -> list[str]:
    """Every way a variant differs from the baseline beyond its method (the training setup, finished folds)."""
    folds = [f"{variant} on {_task_name(task)}: {r.runs_finished}/{r.runs_expected} runs finished (baseline "
             f"{variants[suite.baseline].runs_finished}/{variants[suite.baseline].runs_expected})"
             for task, variants in results.items() if suite.baseline in variants
             for variant, r in variants.items()
             if variant != suite.baseline and r.runs_finished != variants[suite.baseline].runs_finished]
    if not lines and not folds:
        return ["**Fair comparison**: every variant trains with the baseline's patch, batch, spacing, iterations, "
                "epochs and precision, on as many folds; only the method differs."]
    return ["## Differences beyond the method", "",
            "Each of these makes a comparison with the baseline less than like for like:", "",
            *(f"- {line}" for line in [*lines, *folds])]


def _task_table(suite: Suite, task: Task, variants: Mapping[str, VariantResult]) -> list[str]:
    own = list(dict.fromkeys(m for r in variants.values() for m in r.own_per_run))
    compute = " training (min) | s/epoch | peak host MB | peak GPU MB | parameters |"
    lines = [f"## {_task_name(task)}", "", "| variant | Dice | folds | cases | HD95 (mm) | NSD |"
             + "".join(f" {m} |" for m in own) + compute,
             "|---|---|---|---|---|---|" + "---|" * len(own) + "---|---|---|---|---|"]
    for variant, r in variants.items():
        folds = f"{r.runs_finished}/{r.runs_expected}" + ("" if r.complete else " ⚠ incomplete")
        lines.append(f"| {variant}{' (baseline)' if variant == suite.baseline else ''} | {_mean_std(r.dice_per_run)} "
                     f"| {folds} | {len(r.case_dice)} | {_mean_std(r.hd95_per_run, 2)} | {_mean_std(r.nsd_per_run)} |"
                     + "".join(f" {_mean_std(r.own_per_run.get(m, []))} |" for m in own)
                     + f" {r.train_seconds / 60:.1f} | {_mean_std(r.seconds_per_epoch, 2)} | {r.peak_host_mb or '–'} "
                     f"| {r.peak_device_mb or '–'} | {r.parameters or '–'} |")
    return lines


def _ranking_table(suite: Suite, task_ranks: Mapping[Task, Mapping[str, float]]) -> list[str]:
    tasks = list(task_ranks)
    lines = ["## Ranking", "", "Per dataset/configuration the variants are ranked by mean Dice (1 = best, ties share), "
             "then the ranks are averaged over datasets, as the Medical Segmentation Decathlon does.", "",
             "| variant | " + " | ".join(_task_name(t) for t in tasks) + " | mean rank | datasets |",
             "|---|" + "---|" * (len(tasks) + 2)]
    for variant in suite.variants:
        values = [task_ranks[t].get(variant) for t in tasks]
        known = [v for v in values if v is not None]
        cells = " | ".join(f"{v:g}" if v is not None else "–" for v in values)
        lines.append(f"| {variant} | {cells} | {f'{np.mean(known):.2f}' if known else '–'} | {len(known)} |")
    return lines


def _comparison_table(suite: Suite, tests: Sequence[Comparison]) -> list[str]:
    lines = [f"## Paired comparison with `{suite.baseline}`", "",
             "Per case: Dice averaged over labels (and seeds); Wilcoxon signed-rank test on the cases both predicted, "
             "p-values Holm-corrected over every comparison in this table. Effect size: mean difference and "
             "matched-pairs rank-biserial correlation r (> 0: the variant is better).", ""]
    if not tests:
        return [*lines, "No comparison yet: it needs complete cross-validations of a variant and the baseline."]
    return [*lines, "| dataset / configuration | variant | cases | mean ΔDice | r | p | p (Holm) |",
            "|---|---|---|---|---|---|---|",
            *(f"| {_task_name(c.task)} | {c.variant} | {c.cases} | {c.mean_difference:+.4f} | {c.rank_biserial:+.2f} "
              f"| {c.p_value:.3g} | {c.p_holm:.3g} |" for c in tests)]


def _without_result(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    missing = [r for r in runs if r["status"] != "finished"]
    if not missing:
        return []
    return ["## Runs without a result", "",
            *(f"- {r['dataset']} / {r['configuration']} / {r['variant']} / fold {r['fold']} / seed {r['seed']}: "
              f"{r['status']} — {r['error']}" for r in missing)]


def per_case_plot(suite: Suite, results: Mapping[Task, Mapping[str, VariantResult]]) -> Figure:
    """One panel per dataset/configuration: the per-case Dice of every variant (box + points)."""
    tasks = list(results)
    fig = Figure(figsize=(max(4.0, 1.2 * len(suite.variants)) * min(len(tasks), 3),
                          3.6 * ((len(tasks) + 2) // 3)))
    axes = fig.subplots((len(tasks) + 2) // 3, min(len(tasks), 3), squeeze=False).ravel()
    rng = np.random.default_rng(0)
    for ax, task in zip(axes, tasks, strict=False):
        variants = list(results[task])
        values = [list(results[task][v].case_dice.values()) for v in variants]
        ax.boxplot([v or [np.nan] for v in values], showfliers=False)
        for i, v in enumerate(values, start=1):
            ax.plot(i + rng.uniform(-0.12, 0.12, len(v)), v, "o", ms=3, alpha=0.6, color="tab:blue")
        labels = [f"{v}\n({results[task][v].runs_finished}/{results[task][v].runs_expected} folds"
                  f"{'' if results[task][v].complete else ', incomplete'})" for v in variants]
        ax.set_xticks(range(1, len(variants) + 1), labels, fontsize=7)
        ax.set(title=_task_name(task), ylabel="Dice per case", ylim=(-0.02, 1.02))
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def rank_plot(suite: Suite, task_ranks: Mapping[Task, Mapping[str, float]]) -> Figure:
    """Rank heat map: datasets × variants, 1 = best; blank where a cross-validation is incomplete."""
    tasks, variants = list(task_ranks), list(suite.variants)
    grid = np.array([[task_ranks[t].get(v, np.nan) for v in variants] for t in tasks]) if tasks else \
        np.full((1, len(variants)), np.nan)
    fig = Figure(figsize=(4.5 + 1.1 * len(variants), 1.6 + 0.45 * max(len(tasks), 1)))
    ax = fig.subplots()
    worst = max(len(variants), 2)
    image = ax.imshow(grid, cmap="viridis_r", vmin=1, vmax=worst, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=10,
                    color="black" if value <= (1 + worst) / 2 else "white")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks) or 1), [_task_name(t) for t in tasks] or ["(no complete result)"], fontsize=8)
    ax.set_title(f"{suite.name}: rank by mean Dice", fontsize=10)
    fig.colorbar(image, ax=ax, label="rank (1 = best)", ticks=range(1, worst + 1))
    fig.tight_layout()
    return fig
