"""A damaged checkpoint is named, and resuming falls back to the newest intact one, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnlight.model.checkpoints import load_checkpoint
from nnlight.training.checkpoint_io import resume_checkpoint
from nnlight.utils.errors import UserError


def _checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    torch.save({"epoch": 7, "state_dict": {}}, last)
    torch.save({"epoch": 5, "state_dict": {}}, best)
    return last, best


def test_resume_uses_last_and_falls_back_to_the_newest_intact(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    last, best = _checkpoints(tmp_path)
    assert resume_checkpoint([last, best]) == last
    last.write_bytes(last.read_bytes()[:100])  # truncated
    assert resume_checkpoint([last, best]) == best
    assert "Skipped" in capsys.readouterr().out
    assert resume_checkpoint([tmp_path / "none.ckpt"]) is None  # a new run


def test_nothing_intact_is_a_clear_error(tmp_path: Path) -> None:
    last, best = _checkpoints(tmp_path)
    for path in (last, best):
        path.write_bytes(b"")
    with pytest.raises(UserError, match=r"last.ckpt: cannot be read as a checkpoint.*delete"):
        resume_checkpoint([last, best])
    (tmp_path / "evil.ckpt").write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would call os.system
    with pytest.raises(UserError, match=r"evil\.ckpt: contains Python code or objects \(os.system\)"):
        load_checkpoint(tmp_path / "evil.ckpt")


def test_checkpoints_are_written_in_the_background_from_a_copy(tmp_path: Path) -> None:
    """Training goes on while the thread writes: what is saved is the state at the moment of the save."""
    from nnlight.training.checkpoint_io import checkpoint_plugin

    plugin = checkpoint_plugin()
    state = {"state_dict": {"w": torch.ones(3)}, "epoch": 1}
    plugin.save_checkpoint(state, tmp_path / "last.ckpt")
    state["state_dict"]["w"] += 1  # the next optimizer step, in place
    plugin.teardown()  # waits for the writer
    assert torch.equal(load_checkpoint(tmp_path / "last.ckpt")["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
