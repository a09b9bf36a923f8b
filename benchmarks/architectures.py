"""Compute per network option at one fixed patch: parameters, forward+backward time and peak host memory.

    python -m benchmarks.architectures [--patch 64 64 64] [--channels 4] [--classes 4] [--batch 2] [--repeats 3]

Every network is built from its configs/network/<option>.yaml (as train.py does) with a BraTS-like plan: nnU-Net's
5-stage 3D topology for the patch (features 32..320, 3x3x3 kernels, strides 2). Each one runs in its own process
so its peak memory is its own (reported above what the interpreter holds with torch and MONAI loaded). Prints a
Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks._common import CONFIGS, provenance
from nnlight.model.network import NetworkChoice, architecture_facts, check_network
from nnlight.planning.plans import Architecture

OPTIONS = {  # name: (network option, its plan's encoder, blocks per stage)
    "nnU-Net (PlainConvUNet)": ("default", "PlainConvUNet", [2, 2, 2, 2, 2]),
    "ResEnc M": ("default", "ResidualEncoderUNet", [1, 3, 4, 6, 6]),
    "MedNeXt-S k3": ("mednext_s", None, None),
    "MedNeXt-B k3": ("mednext_b", None, None),
    "SwinUNETR": ("swinunetr", None, None),
    "UNETR": ("unetr", None, None),
    "SegResNet": ("segresnet", None, None),
    "DynUNet": ("dynunet", None, None),
}


def _architecture(encoder: str, blocks: list[int], dims: int) -> Architecture:
    return Architecture(encoder, 5, [32, 64, 128, 256, 320], [[3] * dims] * 5, [[1] * dims] + [[2] * dims] * 4,
                        blocks, [1, 1, 1, 1] if encoder == "ResidualEncoderUNet" else [2, 2, 2, 2])


def measure(name: str, patch: list[int], channels: int, classes: int, batch: int, repeats: int) -> dict:
    option, encoder, blocks = OPTIONS[name]
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the interpreter with torch and MONAI loaded
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        node = compose(overrides=[f"+network={option}"]).network
    choice = NetworkChoice.from_config(OmegaConf.to_container(node, resolve=True))
    facts = architecture_facts(_architecture(encoder or "PlainConvUNet", blocks or [2] * 5, len(patch)), channels,
                               classes, patch)
    checked = check_network(choice, facts, batch)
    network = checked.choice.build(checked.facts).train()
    images = torch.randn(batch, channels, *patch)
    seconds = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        outputs = network(images)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sum(o.float().mean() for o in outputs).backward()
        network.zero_grad(set_to_none=True)
        if i:  # the first pass warms up the allocator
            seconds.append(time.perf_counter() - started)
    return {"name": name, "parameters": checked.parameters, "outputs": checked.outputs,
            "seconds": sum(seconds) / len(seconds),
            "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - imported) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs="+", default=[64, 64, 64])
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: measure one network, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.patch, args.channels, args.classes, args.batch, args.repeats)))
        return
    print(provenance(f"architectures: patch {args.patch}, {args.channels} channels, {args.classes} classes, batch "
                     f"{args.batch}, forward+backward mean of {args.repeats} after one warm-up"))
    print("\n| network | parameters | deep-supervision outputs | forward+backward (s) | peak host memory (MB, "
          "above the loaded interpreter) |\n|---|---|---|---|---|")
    for name in OPTIONS:
        done = subprocess.run([sys.executable, "-m", "benchmarks.architectures", "--one", name, "--patch",
                               *map(str, args.patch), "--channels", str(args.channels), "--classes",
                               str(args.classes), "--batch", str(args.batch), "--repeats", str(args.repeats)],
                              cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
        if done.returncode:
            print(f"| {name} | failed: {done.stderr.strip().splitlines()[-1][:120]} | | | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['parameters'] / 1e6:.1f} M | {r['outputs']} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
