"""Fair by construction: how each variant of a suite trains beyond its method, against the baseline.

A comparison is fair when a variant differs from the baseline in its method only. Everything else a training
depends on — the patch it trains on (the plan's, or adapted by the network, and how), the batch, the spacing of
its plan, iterations per epoch, epochs, precision — is read from each variant's own checked training setup (the
config train.py would run with, the network built once on the plan's patch), so the suite's dry run and report
name every difference, and a variant that cannot train on a dataset (a network that cannot take the plan's patch)
is reported before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from nnlight.benchmarking.suite import Suite, SuiteRun, run_overrides
from nnlight.pipeline import train_config
from nnlight.pipeline.cli import compose_config
from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.train_setup import TrainSetup, prepare
from nnlight.utils.errors import UserError

Task = tuple[str, str]  # (dataset, configuration)


@dataclass(frozen=True)
class TrainingFacts:
    """What a variant's training depends on besides its method."""

    patch: tuple[int, ...]
    planned_patch: tuple[int, ...]
    batch: int
    spacing: tuple[float, ...]
    iterations: int
    epochs: int
    precision: str

    def differences(self, baseline: TrainingFacts) -> list[str]:
        """Each way this training differs from ``baseline``'s, readable."""
        def shape(values: Sequence[Any]) -> str:
            return "x".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

        notes = []
        if self.patch != baseline.patch:
            how = f"the network adapted the plan's {shape(self.planned_patch)}" if self.patch != self.planned_patch \
                else "the plan's"
            notes.append(f"patch {shape(self.patch)} ({how}; baseline {shape(baseline.patch)})")
        for label, mine, theirs in (("batch", self.batch, baseline.batch),
                                    ("spacing", shape(self.spacing), shape(baseline.spacing)),
                                    ("iterations per epoch", self.iterations, baseline.iterations),
                                    ("epochs", self.epochs, baseline.epochs),
                                    ("precision", self.precision, baseline.precision)):
            if mine != theirs:
                notes.append(f"{label} {mine} (baseline {theirs})")
        return notes


def training_setup(overrides: list[str]) -> TrainSetup:
    """The checked training setup train.py would run with these overrides (``UserError`` when it cannot)."""
    cfg = compose_config(CONFIG_DIR, "train", overrides)
    return prepare(train_config.parse(DictConfig({k: v for k, v in cfg.items() if k != "hydra"})))


def training_facts(overrides: list[str]) -> TrainingFacts:
    setup = training_setup(overrides)
    config = setup.config
    return TrainingFacts(tuple(setup.data.patch_size), tuple(int(p) for p in config.plan["patch_size"]),
                         setup.data.batch_size, tuple(float(s) for s in config.plan["spacing"]),
                         setup.data.iterations_per_epoch, int(config.trainer.get("max_epochs", 1000)),
                         str(config.trainer.get("precision", "32")))


def suite_fairness(suite: Suite, runs: Sequence[SuiteRun]) -> dict[tuple[Task, str], list[str]]:
    """Per planned (dataset, configuration) and variant, how it trains differently from the baseline beyond its
    method; ``UserError`` listing every variant that cannot train on a planned dataset at all."""
    first: dict[tuple[Task, str], SuiteRun] = {}
    for run in runs:
        first.setdefault(((run.dataset, run.configuration), run.variant), run)
    facts: dict[tuple[Task, str], TrainingFacts] = {}
    problems = []
    for key, run in first.items():
        try:
            facts[key] = training_facts(run_overrides(suite, run))
        except UserError as e:
            problems.append(f"variant {run.variant} on {run.dataset} / {run.configuration}: {e}")
    if problems:
        raise UserError(f"suite {suite.name}: {len(problems)} variant(s) cannot train as given (nothing was "
                        "trained):\n  " + "\n  ".join(problems))
    return {key: facts[key].differences(facts[(key[0], suite.baseline)])
            for key in facts if key[1] != suite.baseline and (key[0], suite.baseline) in facts}


def fairness_lines(notes: Mapping[tuple[Task, str], list[str]]) -> list[str]:
    """One line per variant and task that differs from the baseline beyond its method."""
    return [f"{variant} on {task[0]} / {task[1]}: {'; '.join(differences)}"
            for (task, variant), differences in notes.items() if differences]
