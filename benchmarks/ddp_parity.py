"""2 processes x batch 1 against 1 process x batch 2: how far apart the losses, gradients and weights end.

    python -m benchmarks.ddp_parity [--backend gloo|nccl]

The training step of tests/training/test_losses_ddp.py (the plan's U-Net of a small 2D and 3D plan, deep
supervision, Dice + CE with and without batch Dice, clipping, SGD with Nesterov momentum, 3 steps), run under DDP
with 2 ranks of one sample each and in one process on both samples; prints the largest differences.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.training.test_losses_ddp import CASES, STEPS, two_ranks_and_one

from benchmarks._common import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    args = parser.parse_args()
    print(provenance("benchmarks.ddp_parity") + f" | backend {args.backend}\n")
    print(f"| plan | batch Dice | loss: mean of ranks vs one process (max over {STEPS} steps) | gradients | weights "
          "| momentum | rank 0 = rank 1 |")
    print("|---|---|---|---|---|---|---|")
    for dims, batch_dice in CASES:
        with tempfile.TemporaryDirectory() as folder:
            ranks, single = two_ranks_and_one(Path(folder), dims, batch_dice, args.backend)
        loss = max(abs((a + b) / 2 - c) for a, b, c in zip(ranks[0]["losses"], ranks[1]["losses"],
                                                              single["losses"], strict=True))
        worst = {part: max(float((ranks[0][part][n] - v).abs().max()) for n, v in single[part].items())
                 for part in ("gradients", "weights")}
        momentum = max(float((a - b).abs().max()) for a, b in zip(ranks[0]["momentum"], single["momentum"],
                                                                  strict=True))
        same = all(bool((ranks[0]["weights"][n] == ranks[1]["weights"][n]).all()) for n in single["weights"])
        print(f"| {dims}D | {'yes' if batch_dice else 'no'} | {loss:.1e} | {worst['gradients']:.1e} | "
              f"{worst['weights']:.1e} | {momentum:.1e} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
