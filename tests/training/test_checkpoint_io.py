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


def _finished_run(folder: Path, best_epoch: int) -> tuple[Path, Path, Path]:
    final, best, last = (folder / f"{n}.ckpt" for n in ("final", "best", "last"))
    # as Lightning writes them: final counts the finished epoch (11), the others the epoch they were saved in
    for path, epoch in ((final, 11), (last, 10), (best, best_epoch)):
        step = 10 * min(epoch + 1, 11)  # one state, one step: best of the last epoch is final's state
        torch.save({"epoch": epoch, "global_step": step, "state_dict": {"w": torch.full((3,), float(step))}}, path)
    return final, best, last


@pytest.mark.parametrize(("policy", "best_epoch", "kept", "files_on_disk"), [
    ("final", 6, ["final.ckpt"], 1),
    ("best_and_final", 6, ["best.ckpt", "final.ckpt"], 2),
    ("best_and_final", 10, ["best.ckpt", "final.ckpt"], 1),  # the best epoch was the last: one file, two names
    ("all", 6, ["best.ckpt", "final.ckpt", "last.ckpt"], 2),  # last is final's state: a link
    ("all", 10, ["best.ckpt", "final.ckpt", "last.ckpt"], 1)])
def test_a_finished_run_keeps_what_its_policy_asks_and_one_file_per_state(
        tmp_path: Path, policy: str, best_epoch: int, kept: list[str], files_on_disk: int) -> None:
    from nnlight.training.checkpoint_io import keep_checkpoints

    final, best, last = _finished_run(tmp_path, best_epoch)
    keep_checkpoints(final, best, last, policy, final_step=110)
    assert sorted(p.name for p in tmp_path.iterdir()) == kept
    assert len({p.stat().st_ino for p in tmp_path.iterdir()}) == files_on_disk
    if best.is_file():  # a link or the file itself: best still holds the best epoch's weights
        assert torch.equal(load_checkpoint(best)["state_dict"]["w"], torch.full((3,), 10.0 * (best_epoch + 1)))


def test_an_unknown_checkpoint_policy_names_the_valid_ones() -> None:
    from nnlight.training.checkpoint_io import check_checkpoint_policy

    with pytest.raises(UserError, match="checkpoints=best: choose one of final, best_and_final, all"):
        check_checkpoint_policy("best")
