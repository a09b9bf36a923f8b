"""Third-party noise is filtered where it arises (message and module); anything else still shows."""

from __future__ import annotations

import warnings

from nnlight.utils.quiet import THIRD_PARTY_NOISE, quiet_third_party_warnings, verbose_requested


def _shown(message: str, module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        warnings.warn_explicit(message, UserWarning, "x.py", 1, module=module)
    return bool(caught)


def test_the_known_lines_are_hidden_only_from_their_own_module() -> None:
    leaf = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    assert not _shown(leaf, "lightning.pytorch.utilities._pytree")
    interval = "The number of training batches (2) is smaller than the logging interval Trainer(log_every_n_steps=50)."
    assert not _shown(interval, "lightning.pytorch.loops.fit_loop")
    assert _shown(leaf, "my_package.network")  # the same words from elsewhere are not hidden
    assert _shown("something else", "lightning.pytorch.loops.fit_loop")
    assert len(THIRD_PARTY_NOISE) == 2


def test_verbose_true_on_the_command_line_keeps_everything() -> None:
    assert verbose_requested(["plan=D/2d", "verbose=true"])
    assert not verbose_requested(["plan=D/2d", "verbose=false"]) and not verbose_requested(["plan=D/2d"])
