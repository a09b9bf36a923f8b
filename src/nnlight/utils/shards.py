"""A cohort split over jobs: ``shard=k shards=N`` takes the cases whose name hashes to ``k`` (of ``N``).

The part a case falls in depends on its name alone (CRC-32, the same on every machine and Python), so a shard
started later, on another node or after cases were added, never takes a case another shard took: the shards'
outputs merge into one folder with no case done twice and none left out.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from nnlight.utils.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def from_values(cls, shard: int | None, shards: int) -> Shard:
        """``shard=``/``shards=`` from a command line, checked."""
        if shards < 1:
            raise UserError(f"shards={shards}: the number of jobs the cases are split over, 1 or more")
        if shards == 1:
            if shard not in (None, 0):
                raise UserError(f"shard={shard} needs shards=N (how many jobs share the cases), e.g. "
                                f"-m shard=0,1 shards=2")
            return cls()
        if shard is None or not 0 <= shard < shards:
            raise UserError(f"shards={shards} needs shard=0..{shards - 1} (this job's part), e.g. -m "
                            f"shard={','.join(str(k) for k in range(shards))} shards={shards}")
        return cls(shard, shards)

    def contains(self, case_id: str) -> bool:
        return self.count == 1 or zlib.crc32(case_id.encode("utf-8")) % self.count == self.index

    def select(self, case_ids: Iterable[str]) -> list[str]:
        return [c for c in case_ids if self.contains(c)]

    def describe(self) -> str:
        return "" if self.count == 1 else f"shard {self.index} of {self.count}"
