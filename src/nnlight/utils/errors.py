"""User-facing errors: one readable message, exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A mistake the user can fix (bad dataset, wrong override, missing file).

    The entry points print ``str(error)`` and exit with code 2 instead of showing a traceback.
    """


class DatasetProblems(UserError):
    """Every problem found in a dataset, collected so the user can fix them all in one go."""

    def __init__(self, dataset: str, problems: Sequence[str]) -> None:
        self.dataset = dataset
        self.problems = list(problems)
        lines = [f"Dataset {dataset} has {len(self.problems)} problem(s); nothing was written:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """For console scripts: a ``UserError`` ends the command with its one-line message and exit code 2."""
    try:
        yield
    except UserError as e:
        print(f"nnlight: error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
