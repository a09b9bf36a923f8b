"""The paper's table: mean ± std, n and significance marks, as CSV and as a booktabs LaTeX table."""

from __future__ import annotations

from nnlight.benchmarking.paper_tables import latex_text, significance, summary_latex, summary_rows
from nnlight.benchmarking.report import Comparison, VariantResult
from nnlight.benchmarking.suite import read_suite


def _result(dice: list[float], expected: int = 2) -> VariantResult:
    return VariantResult(expected, len(dice), dice, [4.0] * len(dice), [0.8] * len(dice), {}, {"a": 0.5, "b": 0.7},
                         0.0, [], None, None, None)


def test_marks_follow_the_holm_corrected_p_value() -> None:
    assert [significance(p) for p in (0.0005, 0.005, 0.03, 0.2, float("nan"), None)] == \
        ["***", "**", "*", "", "", ""]


def test_names_are_escaped_for_latex() -> None:
    assert latex_text("dice_loss#2 50%") == r"dice\_loss\#2 50\%"


def test_the_table_bolds_the_best_marks_significance_and_flags_incomplete_runs() -> None:
    suite = read_suite({"name": "my_idea", "datasets": ["Dataset001_A"], "baseline": "baseline",
                        "variants": {"baseline": [], "my_net": ["network=x"], "half": ["loss=dice"]}})
    task = ("Dataset001_A", "2d")
    results = {task: {"baseline": _result([0.7, 0.8]), "my_net": _result([0.85, 0.87]), "half": _result([0.6], 2)}}
    tests = [Comparison(task, "my_net", 2, 0.11, 1.0, 0.004, 0.008)]
    rows = summary_rows(suite, results, tests)
    mine = next(r for r in rows if r["variant"] == "my_net")
    assert mine["significance"] == "**" and mine["runs"] == 2 and mine["cases"] == 2
    assert abs(mine["dice_std"] - 0.0141421) < 1e-6 and mine["dice_difference"] == 0.11
    latex = summary_latex(suite, rows)
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"\begin{tabular}{llcccc}" in latex
    assert r"my\_net & $\mathbf{0.860 \pm 0.014}^{**}$ & $4.00 \pm 0.00$ & $0.800 \pm 0.000$ & 2 / 2 \\" in latex
    assert r"half \textsuperscript{\dag} & $0.600$" in latex and "incomplete cross-validation" in latex
