"""The training breakdown benchmark in CI size: every row is measured (not how fast: that is BENCHMARKS.md's job)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from benchmarks.training_breakdown import main


@pytest.mark.slow  # 15 s: the benchmark script itself; keeps the default suite under 15 minutes
def test_breakdown_measures_every_part_of_an_iteration_and_an_epoch(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    for root in ("RAW", "PREPROCESSED", "RESULTS"):
        monkeypatch.setenv(f"NNLIGHT_{root}", str(tmp_path / root))  # the benchmark points them at its work folder
    result = main(["--shape", "16", "32", "28", "--epochs", "2", "--iterations", "2", "--val-iterations", "1",
                   "--bare-steps", "1", "--workers", "1", "--work", str(tmp_path)])
    iteration, epoch = dict(result.iteration), dict(result.epoch)
    assert list(iteration) == ["waiting for the next batch (data workers)", "host -> device copy",
                               "augmentation on the device", "training step in Lightning",
                               "  the bare PyTorch step (measured apart)",
                               "  Lightning + logging (difference; negative = within noise)",
                               "loop, between the hooks", "iteration (steady state)"]
    assert all(math.isfinite(value) for value in iteration.values())
    assert all(value >= 0 for name, value in iteration.items() if "difference" not in name)
    assert iteration["training step in Lightning"] > 0 and result.bare_step > 0
    assert iteration["iteration (steady state)"] >= iteration["training step in Lightning"]
    assert list(epoch) == ["first batch of the run (worker start-up)", "first batch of a later epoch",
                           "training iterations (2)", "validation (1 batch(es))",
                           "checkpoint saving (what the training thread waits for)",
                           "the rest (progress plot, loggers, epoch hooks)", "epoch (wall)",
                           "epoch overhead (epoch - iterations x steady iteration)"]
    assert epoch["checkpoint saving (what the training thread waits for)"] > 0 and epoch["validation (1 batch(es))"] > 0
    assert epoch["epoch (wall)"] >= epoch["training iterations (2)"]
    assert result.workers == 1 and result.worker_rate_per_core > 0
    printed = capsys.readouterr().out
    assert "| per training iteration |" in printed and "cores keep up with the bare step" in printed
