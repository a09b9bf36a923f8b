"""Names from files and overrides that become path parts: plain, bounded and ASCII (nothing that looks like
another name)."""

from __future__ import annotations

import pytest

from nnlight.utils.errors import UserError
from nnlight.utils.names import folder_name, model_name


@pytest.mark.parametrize(("name", "problem"), [
    ("baseline\u202e]gnp.exe", "holds '\\u202e'"),  # a right-to-left override
    ("bаseline", "holds 'а'"),  # a Cyrillic a
    ("base line", "holds ' '"),
    ("x'$(id)'", "holds"),
    ("a/b", "'/'"),
    (".hidden", "starts with '.'"),
])
def test_names_that_could_deceive_or_escape_are_refused(name: str, problem: str) -> None:
    with pytest.raises(UserError, match="not a plain folder name") as refused:
        folder_name(name, "member")
    assert problem in str(refused.value)
    with pytest.raises(UserError):
        model_name(f"3d_fullres/{name}", "member")


def test_the_names_nnlight_writes_are_accepted() -> None:
    for name in ("baseline", "nnUNetTrainer_250epochs", "baseline[data.iterations_per_epoch=2,loss=dice]",
                 "baseline[init_from=results~Dataset900_Demo~fold_0#1a2b3c4d,optimizer.lr=0.001]",
                 "baseline[network.act={name:relu},x=[1,2],...#0123456789ab]"):
        assert folder_name(name, "x") == name
