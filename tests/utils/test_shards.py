"""A cohort split over jobs by case name: every case in exactly one shard, whatever else the input holds."""

from __future__ import annotations

import pytest

from nnlight.utils.errors import UserError
from nnlight.utils.shards import Shard


def test_every_case_falls_in_exactly_one_shard_and_the_shards_share_them_out() -> None:
    cases = [f"case_{i:04d}" for i in range(400)]
    parts = [Shard.from_values(k, 4).select(cases) for k in range(4)]
    assert sorted(c for part in parts for c in part) == cases
    assert all(70 <= len(part) <= 130 for part in parts)  # a hash, not a count: roughly even


def test_a_case_keeps_its_shard_when_other_cases_come_or_go() -> None:
    shard = Shard.from_values(1, 3)
    before = shard.select(["liver_007", "brain_1", "x"])
    after = shard.select(["new_case", "x", "brain_1", "liver_007", "another"])
    assert [c for c in after if c in ("liver_007", "brain_1", "x")] == [c for c in ("x", "brain_1", "liver_007")
                                                                         if c in before]
    assert Shard.from_values(None, 1).select(["a", "b"]) == ["a", "b"]


def test_the_part_of_a_case_is_the_same_in_every_version_and_on_every_machine() -> None:
    """Shards of one cohort may run on different nodes and nnlight versions: the assignment is pinned."""
    parts = {c: [k for k in range(3) if Shard(k, 3).contains(c)] for c in ("case_0001", "case_0002", "case_0003")}
    assert parts == {"case_0001": [2], "case_0002": [1], "case_0003": [0]}


@pytest.mark.parametrize(("shard", "shards", "message"), [
    (2, 2, r"shards=2 needs shard=0..1"),
    (None, 3, r"shard=0,1,2 shards=3"),
    (1, 1, r"shard=1 needs shards=N"),
    (0, 0, r"shards=0: the number of jobs"),
])
def test_a_shard_that_does_not_exist_is_refused_with_the_fix(shard: int | None, shards: int, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Shard.from_values(shard, shards)
