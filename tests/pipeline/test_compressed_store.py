"""preprocess.store=blosc2 end to end: plan.py converts the demo's store to the compressed format, and training
on it ends with the weights training on the memory-mapped store ends with (the same bytes reach the network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nnlight.preprocessing.store import STORE_FORMATS, completed_cases, format_of_case, load_case
from tests.conftest import TINY_BUDGET, Roots, planned_demo, run_script

pytestmark = pytest.mark.cli


def _final_weights(roots: Roots) -> dict[str, torch.Tensor]:
    runs = list((roots.results / "Dataset900_Demo" / "2d").glob("*/fold_0/checkpoints/final.ckpt"))
    assert len(runs) == 1, runs
    return torch.load(runs[0], weights_only=True)["state_dict"]


def test_a_compressed_store_holds_the_same_cases_and_trains_the_same_weights(planned_demo_template: Roots,
                                                                             tmp_path: Path) -> None:
    pytest.importorskip("blosc2", reason='pip install "nnlight[compressed]"')
    plain = planned_demo(planned_demo_template, tmp_path / "plain")
    compressed = planned_demo(planned_demo_template, tmp_path / "compressed")
    result = run_script("plan.py", "dataset=Dataset900_Demo", "num_workers=0", "preprocess.store=blosc2",
                        roots=compressed)
    assert result.returncode == 0, result.stderr[-3000:]
    for identifier in ("nnUNetPlans_2d", "nnUNetPlans_3d_fullres"):
        folders = [r.preprocessed / "Dataset900_Demo" / identifier for r in (plain, compressed)]
        cases = completed_cases(folders[0])
        assert completed_cases(folders[1]) == cases and len(cases) == 5
        assert all(format_of_case(folders[1], c) is STORE_FORMATS["blosc2"] for c in cases)
        assert not list(folders[1].glob("*.npy"))  # converted, not kept twice
        for case in cases:
            (a, a_seg, _), (b, b_seg, _) = (load_case(f, case) for f in folders)
            assert np.array_equal(a, b) and np.array_equal(a_seg, b_seg)
        size = [sum(p.stat().st_size for p in f.iterdir()) for f in folders]
        assert size[1] < size[0]
    for roots in (plain, compressed):
        result = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, "validation.max_cases=1",
                            roots=roots)
        assert result.returncode == 0, result.stderr[-3000:]
    plain_weights, compressed_weights = _final_weights(plain), _final_weights(compressed)
    for name, value in plain_weights.items():
        assert torch.equal(compressed_weights[name], value), name
