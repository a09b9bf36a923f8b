"""Folder layouts nnlight reads and writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_a_comparison_named_in_a_file_is_never_a_path(tmp_path: Path) -> None:
    from nnlight.utils.errors import UserError
    from nnlight.utils.folders import DatasetResults

    results = DatasetResults(tmp_path / "Dataset900_Demo")
    results.comparisons.mkdir(parents=True)
    results.latest_comparison.write_text(json.dumps({"name": "../../elsewhere"}))
    with pytest.raises(UserError, match="not a plain folder name"):
        results.latest()
