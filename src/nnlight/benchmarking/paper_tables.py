"""The benchmark's result table for a paper: ``summary.csv`` (every number, unrounded) and ``summary.tex`` (a
booktabs table): per dataset/configuration and variant the foreground Dice, HD95 and NSD as mean ± std over folds
and seeds, the runs and cases behind them, and against the baseline the mean Dice difference with its
Holm-corrected Wilcoxon p-value and significance mark."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnlight.benchmarking.report import Comparison, Task, VariantResult
from nnlight.benchmarking.suite import Suite
from nnlight.benchmarking.table import to_csv

SUMMARY_COLUMNS = ("dataset", "configuration", "variant", "baseline", "complete", "runs", "cases", "dice_mean",
                   "dice_std", "hd95_mean", "hd95_std", "nsd_mean", "nsd_std", "dice_difference", "p_holm",
                   "significance")
# the marks and their thresholds on the Holm-corrected p-value, as the table's note states them
SIGNIFICANCE = ((0.001, "***"), (0.01, "**"), (0.05, "*"))


def significance(p_holm: float | None) -> str:
    if p_holm is None or math.isnan(p_holm):
        return ""
    return next((mark for threshold, mark in SIGNIFICANCE if p_holm < threshold), "")


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None and not np.isnan(v)]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else None


def summary_rows(suite: Suite, results: Mapping[Task, Mapping[str, VariantResult]],
                 tests: Sequence[Comparison]) -> list[dict[str, Any]]:
    by_variant = {(c.task, c.variant): c for c in tests}
    rows = []
    for task, variants in results.items():
        for variant, result in variants.items():
            test = by_variant.get((task, variant))
            dice, dice_std = _mean_std(result.dice_per_run)
            hd95, hd95_std = _mean_std(result.hd95_per_run)
            nsd, nsd_std = _mean_std(result.nsd_per_run)
            rows.append({"dataset": task[0], "configuration": task[1], "variant": variant,
                         "baseline": variant == suite.baseline, "complete": result.complete,
                         "runs": result.runs_finished, "cases": len(result.case_dice), "dice_mean": dice,
                         "dice_std": dice_std, "hd95_mean": hd95, "hd95_std": hd95_std, "nsd_mean": nsd,
                         "nsd_std": nsd_std, "dice_difference": test.mean_difference if test else None,
                         "p_holm": test.p_holm if test else None,
                         "significance": significance(test.p_holm) if test else ""})
    return rows


def summary_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    return to_csv(rows, SUMMARY_COLUMNS)


def latex_text(text: str) -> str:
    """Plain text as LaTeX reads it (run and dataset names hold ``_``, ``#``, ``%``, ...)."""
    special = {"\\": r"\textbackslash{}", "_": r"\_", "#": r"\#", "%": r"\%", "&": r"\&", "$": r"\$", "{": r"\{",
               "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(c, c) for c in text)


def _cell(mean: float | None, std: float | None, digits: int, bold: bool = False, mark: str = "") -> str:
    if mean is None:
        return "--"
    value = f"{mean:.{digits}f}" + (rf" \pm {std:.{digits}f}" if std is not None else "")
    value = rf"\mathbf{{{value}}}" if bold else value
    return f"${value}" + (f"^{{{mark}}}" if mark else "") + "$"


def summary_latex(suite: Suite, rows: Sequence[Mapping[str, Any]]) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): the best mean Dice per dataset/configuration in bold."""
    lines = [f"% nnlight benchmark suite {suite.name}: needs \\usepackage{{booktabs}}",
             r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_text(suite.name)}: foreground Dice, HD95 (mm) and NSD, mean $\pm$ std over folds "
             rf"and seeds; $n$: runs / cases. Marks: Wilcoxon signed-rank test against {latex_text(suite.baseline)} "
             r"on the cases, Holm-corrected: $^{*}p<0.05$, $^{**}p<0.01$, $^{***}p<0.001$.}",
             rf"\label{{tab:{''.join(c if c.isalnum() else '-' for c in suite.name)}}}",
             r"\begin{tabular}{llcccc}", r"\toprule",
             r"Dataset / configuration & Variant & Dice & HD95 (mm) & NSD & $n$ \\", r"\midrule"]
    tasks = list(dict.fromkeys((r["dataset"], r["configuration"]) for r in rows))
    for index, task in enumerate(tasks):
        task_rows = [r for r in rows if (r["dataset"], r["configuration"]) == task]
        best = max((r["dice_mean"] for r in task_rows if r["dice_mean"] is not None), default=None)
        for position, row in enumerate(task_rows):
            name = latex_text(f"{task[0]} / {task[1]}") if position == 0 else ""
            variant = latex_text(row["variant"]) + (" (baseline)" if row["baseline"] else "") + \
                ("" if row["complete"] else r" \textsuperscript{\dag}")
            dice = _cell(row["dice_mean"], row["dice_std"], 3, row["dice_mean"] == best and best is not None,
                         row["significance"])
            lines.append(f"{name} & {variant} & {dice} & {_cell(row['hd95_mean'], row['hd95_std'], 2)} & "
                         f"{_cell(row['nsd_mean'], row['nsd_std'], 3)} & {row['runs']} / {row['cases']} \\\\")
        if index < len(tasks) - 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if any(not r["complete"] for r in rows):
        lines.append(r"\\[2pt]{\footnotesize \dag\ incomplete cross-validation: not ranked or tested.}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
