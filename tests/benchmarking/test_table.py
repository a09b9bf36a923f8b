"""The suite's tidy tables: which scores become columns."""

from __future__ import annotations

from nnlight.benchmarking.table import CASE_COLUMNS, case_columns, own_scores


def test_object_scores_and_a_users_metrics_become_columns_after_the_built_in_ones() -> None:
    metrics = {"Dice": 0.9, "IoU": 0.8, "HD95": 2.0, "NSD": 0.9, "TP": 5, "SEG": 0.7, "ARE": 0.2, "obj_TP": 3,
               "volume_error": 0.1}
    assert own_scores(metrics) == ["SEG", "ARE", "volume_error"]  # counts stay out
    columns = case_columns([{"own_metrics": own_scores(metrics)}])
    assert columns[columns.index("NSD") + 1:columns.index("NSD") + 4] == ["SEG", "ARE", "volume_error"]
    assert case_columns([{"own_metrics": []}]) == CASE_COLUMNS  # a semantic suite's columns are unchanged
