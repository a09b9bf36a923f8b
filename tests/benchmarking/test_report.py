"""The report's statistics by hand: ranks with ties, Holm's correction, the paired test and its effect size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from nnlight.benchmarking.report import Comparison, VariantResult, holm, paired_comparison, ranks


def _result(dice: list[float], cases: dict[str, float], finished: int = 2, expected: int = 2) -> VariantResult:
    return VariantResult(expected, finished, dice, [], [], {}, cases, 0.0, [], None, None, None)


def test_ranks_share_ties_and_leave_out_incomplete_cross_validations() -> None:
    results = {("D", "2d"): {"a": _result([0.8, 0.8], {}), "b": _result([0.7, 0.9], {}), "c": _result([0.5], {}),
                             "d": _result([0.9], {}, finished=1)}}
    assert ranks(results) == {("D", "2d"): {"a": 1.5, "b": 1.5, "c": 3.0}}  # d has 1 of 2 folds: not ranked


def test_holm_multiplies_the_sorted_p_values_and_keeps_them_monotone() -> None:
    tests = [Comparison(("D", "2d"), v, 5, 0.0, 0.0, p) for v, p in (("a", 0.01), ("b", 0.04), ("c", 0.03))]
    assert [c.p_holm for c in holm(tests)] == pytest.approx([0.03, 0.06, 0.06])


def test_paired_comparison_uses_the_common_cases() -> None:
    baseline = _result([0.5], {"c1": 0.5, "c2": 0.6, "c3": 0.7, "c4": 0.2, "c5": 0.3, "only_base": 0.9})
    variant = _result([0.6], {"c1": 0.6, "c2": 0.8, "c3": 0.65, "c4": 0.5, "c5": 0.7})
    comparison = paired_comparison(("D", "2d"), "v", variant, baseline)
    differences = np.array([0.1, 0.2, -0.05, 0.3, 0.4])
    assert comparison.cases == 5 and comparison.mean_difference == pytest.approx(differences.mean())
    assert comparison.p_value == pytest.approx(wilcoxon(differences).pvalue)
    assert comparison.rank_biserial == pytest.approx((2 + 3 + 4 + 5 - 1) / 15)  # ranks of |d|: 0.05 is the smallest


def test_identical_cases_are_no_difference() -> None:
    same = {"c1": 0.5, "c2": 0.6}
    comparison = paired_comparison(("D", "2d"), "v", _result([0.5], same), _result([0.5], same))
    assert comparison.p_value == 1.0 and comparison.rank_biserial == 0.0


def test_the_task_table_shows_a_users_metric_and_the_compute_of_each_architecture() -> None:
    from nnlight.benchmarking.report import _task_table
    from nnlight.benchmarking.suite import read_suite

    suite = read_suite({"name": "s", "datasets": ["Dataset001_A"], "baseline": "nnunet",
                        "variants": {"nnunet": [], "mednext": ["network=mednext_s"]}, "folds": [0, 1]})
    nnunet = VariantResult(2, 2, [0.8, 0.6], [3.0, 5.0], [0.9, 0.7], {"volume_error": [0.1, 0.3]}, {"c": 0.7},
                           120.0, [1.5, 2.5], 900.0, 4096.0, 31_000_000)
    mednext = VariantResult(2, 1, [0.5], [], [], {}, {"c": 0.5}, 60.0, [3.0], 800.0, None, 5_000_000)
    header, rule, first, second = _task_table(suite, ("Dataset001_A", "3d_fullres"), {"nnunet": nnunet,
                                                                                     "mednext": mednext})[2:]
    assert "| volume_error |" in header and "| peak GPU MB | parameters |" in header
    assert rule.count("|") == header.count("|")
    assert "| 0.7000 ± 0.1414 |" in first and "| 0.2000 ± 0.1414 |" in first and "| 4096.0 | 31000000 |" in first
    assert "1/2 ⚠ incomplete" in second and "5000000" in second


def test_the_software_line_says_installed_package_where_there_is_no_git_checkout() -> None:
    from nnlight.benchmarking.report import _header
    from nnlight.benchmarking.suite import read_suite

    suite = read_suite({"name": "s", "datasets": ["Dataset001_A"], "baseline": "nnunet", "variants": {"nnunet": []}})
    run = {"status": "finished", "deterministic": False, "nnlight_version": "0.1.0", "device": "cpu",
           "git_uncommitted_changes": None, "train_seconds": 60}
    from_wheel = "\n".join(_header(suite, [{**run, "git_revision": None}], 1, []))
    from_checkout = "\n".join(_header(suite, [{**run, "git_revision": "0123456789abcdef"}], 1, []))
    assert "nnlight 0.1.0 @ installed package (no git checkout)" in from_wheel and "None" not in from_wheel
    assert "nnlight 0.1.0 @ 0123456789" in from_checkout
