"""Progress where output is a file or a pipe: plain lines, never a redrawn frame."""

from __future__ import annotations

import io

from nnlight.utils.console_progress import PlainProgress, on_terminal


def test_plain_progress_writes_a_line_per_tenth_and_one_at_the_end_without_carriage_returns() -> None:
    out = io.StringIO()
    items = list(PlainProgress(range(20), desc="Predicting", unit="image", file=out))
    assert items == list(range(20))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert len(lines) == 11  # the first case, each further tenth, nothing twice at the end
    assert lines[0].startswith("Predicting: 1/20 (5 %) images") and lines[-1].startswith("Predicting: 20/20 (100 %)")


def test_updates_in_a_with_block_end_with_the_final_count() -> None:
    out = io.StringIO()
    with PlainProgress(total=3, desc="Validation", unit="case", file=out) as bar:
        bar.update(3)
    assert out.getvalue().count("3/3 (100 %) cases") == 1


def test_a_pipe_or_file_is_no_terminal() -> None:
    assert not on_terminal(io.StringIO())
