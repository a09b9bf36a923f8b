"""The command-line check before Hydra starts: every mistake of one command line at once, each with the closest
valid name."""

from __future__ import annotations

import pytest

from nnlight.pipeline.cli import composition_problem
from nnlight.pipeline.config_dir import CONFIG_DIR
from tests.conftest import Roots

pytestmark = pytest.mark.integration


def test_every_misspelt_key_and_option_is_named_together_with_the_closest_valid_one(planned: Roots) -> None:
    problem = composition_problem(CONFIG_DIR, "train", [
        "plan=Dataset900_Demo/2d", "network=segresnt", "trainer.max_epoch=2", "optimizer.learning_rate=1e-3"])
    assert problem is not None
    lines = problem.splitlines()
    assert lines[0] == "3 mistakes:"
    assert lines[1].startswith("  network=segresnt: no such option; choose one of ")
    assert lines[1].endswith("; did you mean segresnet?")
    assert "trainer.max_epoch: no such setting; valid: trainer.accelerator" in lines[2]
    assert "; did you mean trainer.max_epochs?" in lines[2]  # a typo
    assert "; did you mean optimizer.lr?" in lines[3]  # another framework's name for it


def test_one_mistake_stays_one_line(planned: Roots) -> None:
    problem = composition_problem(CONFIG_DIR, "train", ["plan=Dataset900_Demo/2d", "trainer.max_epoch=2"])
    assert problem is not None and "\n" not in problem and problem.startswith("trainer.max_epoch: no such setting")
    assert composition_problem(CONFIG_DIR, "train", ["plan=Dataset900_Demo/2d", "trainer.max_epochs=2"]) is None
