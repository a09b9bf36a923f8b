"""The ``network`` group: which ``nn.Module`` trains on a plan, checked before anything is written.

The contract a network class meets (README, "Add your own architecture"):

* ``_target_`` names an ``nn.Module`` subclass: nnlight's, MONAI's, or one in the user's own module.
* ``from_plan`` maps constructor arguments to the dataset facts the plan gives (:data:`PLAN_FACTS`), e.g.
  ``{in_channels: input_channels, out_channels: num_classes}``. Facts never come from a method option: a key
  that names a fact is refused. Every other key of the group is a constructor argument.
* The network returns logits ``(batch, num_classes, *patch)``. In training mode it may return a list (or tuple)
  for deep supervision, highest resolution first; the scales are read from the shapes of the check pass. A list
  at inference is fine too: its first entry is used.
* ``patch_divisible_by`` (an int, one int per axis, or ``strides``: the plan's total stride per axis) says what
  each patch axis must divide by. A patch that does not is an error naming the nearest valid patch, unless
  ``adapt_patch: true``, which trains on that patch and records it.
* A class may declare ``inference_arguments``: constructor arguments that differ for inference without changing
  the weights (``PlanUNet`` drops its deep-supervision heads' outputs).

A network named in a run folder or a model file is built only when its class is one of :data:`FILE_NETWORKS` or is
defined in a module the user trusts (``trusted_networks=``), and only from plain arguments that name no URL, path or
pretrained download (:func:`file_argument_problem`): a stranger's model file cannot make nnlight import arbitrary
code, nor make a network's constructor fetch, read or write a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from nnlight.planning.facts import DatasetFacts
from nnlight.planning.plans import Architecture, architecture_from_plan
from nnlight.utils.components import locate_class, planned_component
from nnlight.utils.errors import UserError

# what a constructor argument may take from the plan (``from_plan: {argument: fact}``)
PLAN_FACTS: dict[str, str] = {
    "input_channels": "image channels (+ one per foreground label for a cascade stage)",
    "num_classes": "network outputs: labels incl. background, or regions",
    "spatial_dims": "2 or 3",
    "patch_size": "the training patch (also the sliding-window tile)",
    "architecture": "the plan's U-Net as a dict (network, n_stages, features_per_stage, kernel_sizes, strides, ...)",
    "n_stages": "the plan's number of resolution stages",
    "features_per_stage": "the plan's feature maps per stage",
    "kernel_sizes": "the plan's conv kernel per stage",
    "strides": "the plan's downsampling stride per stage (the first is 1s)",
    "upsampling_strides": "the plan's strides without the first (a decoder's upsampling factors)",
}
OWN_KEYS = ("_target_", "from_plan", "patch_divisible_by", "adapt_patch")  # the group's keys that are not arguments
# The classes a run folder, model file or spec may name without the user's trust: nnlight's U-Net and the MONAI
# networks of nnlight's network options, none of which downloads, reads or writes anything for any argument
FILE_NETWORKS = ("nnlight.nets.PlanUNet", "monai.networks.nets.SegResNet", "monai.networks.nets.SwinUNETR",
                 "monai.networks.nets.UNETR", "monai.networks.nets.DynUNet", "monai.networks.nets.MedNeXt")
# argument names (split at '_') that ask a constructor for a download or a file: refused with a true or text value
_FILE_ARGUMENT_WORDS = frozenset({"pretrained", "pretrain", "url", "uri", "path", "paths", "file", "filename",
                                  "dir", "directory", "folder", "download", "cache", "hub", "load", "weights"})
PLAN_UNET = "nnlight.nets.PlanUNet"
PLAN_UNET_FROM_PLAN = {"input_channels": "input_channels", "num_classes": "num_classes", "architecture": "architecture"}


def trust_setting(targets: Iterable[str]) -> str:
    """The ``trusted_networks=[...]`` argument a printed command needs to load networks of these classes, quoted
    for a shell ('' when every class is one of :data:`FILE_NETWORKS`): the researcher's own modules."""
    modules = sorted({target.rpartition(".")[0] for target in targets if target not in FILE_NETWORKS})
    return f' "trusted_networks=[{",".join(modules)}]"' if modules else ""


@dataclass(frozen=True)
class NetworkChoice:
    """A checked ``network`` group: the class, its own arguments, which arguments the plan fills."""

    target: str
    arguments: dict[str, Any]
    from_plan: dict[str, str]
    patch_divisible_by: int | list[int] | str | None = None
    adapt_patch: bool = False

    @classmethod
    def from_config(cls, node: Mapping[str, Any], where: str = "network") -> NetworkChoice:
        """The group's plain values (pipeline/ resolves the config), checked."""
        values = dict(node)
        checked, from_plan = planned_component(values, where, nn.Module, PLAN_FACTS, OWN_KEYS[2:])
        divisible = values.get("patch_divisible_by")
        if not (divisible is None or divisible == "strides" or _positive_ints(divisible)):
            raise UserError(f"{where}.patch_divisible_by={divisible!r}: an integer, one integer per axis, 'strides' "
                            "(the plan's total stride per axis) or null")
        adapt = values.get("adapt_patch", False)
        if not isinstance(adapt, bool):
            raise UserError(f"{where}.adapt_patch={adapt!r}: true or false")
        return cls(str(values["_target_"]), checked.arguments, from_plan, divisible, adapt)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str, trusted: Sequence[str] = ()) -> NetworkChoice:
        """A choice read from a run folder or model file: a class of :data:`FILE_NETWORKS` or one defined in a
        trusted module, with arguments that cannot make it fetch or touch a file."""
        target = data.get("target")
        if not isinstance(target, str):
            raise UserError(f"{where}: network has no target class; train the fold again")
        module = target.rpartition(".")[0]
        trusted_by = [m for m in trusted if target.startswith(f"{m}.")]
        if target not in FILE_NETWORKS and not trusted_by:
            raise UserError(f"{where}: the network is {target}, not one of the networks nnlight builds from a file by "
                            f"itself; nnlight imports it only if you trust it: add trusted_networks=[{module}] (and "
                            f"have {module} installed)")
        network_class = locate_class(target, f"{where}: network")
        if not (isinstance(network_class, type) and issubclass(network_class, nn.Module)):
            raise UserError(f"{where}: the network {target} is not an nn.Module class; train the fold again")
        defined_in = network_class.__module__
        if target not in FILE_NETWORKS and not any(defined_in == m or defined_in.startswith(f"{m}.") for m in trusted):
            raise UserError(f"{where}: the network {target} is the class {defined_in}.{network_class.__qualname__}, "
                            f"defined outside the trusted module(s) {', '.join(trusted_by)}; trust its own module "
                            f"(trusted_networks=[{defined_in}]) only if you know it")
        arguments = data.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise UserError(f"{where}: network arguments must be a mapping of plain values; train the fold again")
        for name, value in arguments.items():
            problem = file_argument_problem(str(name), value)
            if problem:
                raise UserError(f"{where}: network argument {name}={_short(value)} {problem}; a network built from "
                                "a file may not fetch, read or write anything (export the model again without it)")
        node = {"_target_": target, **arguments, "from_plan": data.get("from_plan", {}),
                "patch_divisible_by": data.get("patch_divisible_by"), "adapt_patch": data.get("adapt_patch", False)}
        return cls.from_config(node, f"{where}: network")

    @property
    def network_class(self) -> type[nn.Module]:
        return locate_class(self.target, "network")

    @property
    def is_plan_unet(self) -> bool:
        """nnlight's U-Net of the plan: the network nnU-Net's checkpoints and plans describe."""
        return self.target == PLAN_UNET

    @property
    def short_name(self) -> str:
        return self.target.rpartition(".")[2]

    def build(self, facts: Mapping[str, Any], inference: bool = False) -> nn.Module:
        """A fresh network for ``facts`` (:func:`plan_facts`); ``inference``: with the class's
        ``inference_arguments``."""
        network_class = self.network_class
        arguments = {**self.arguments, **{a: facts[f] for a, f in self.from_plan.items()}}
        if inference:
            arguments |= getattr(network_class, "inference_arguments", {})
        try:
            return network_class(**arguments)
        except Exception as e:  # a user's class may raise anything for arguments it cannot take
            raise UserError(f"network ({self.target}) could not be built from {_shown(arguments)}: "
                            f"{type(e).__name__}: {e}") from None

    def divisors(self, facts: Mapping[str, Any]) -> list[int] | None:
        """What each patch axis must divide by, or None when the network declares nothing."""
        declared = self.patch_divisible_by
        if declared is None:
            declared = getattr(self.network_class, "patch_divisible_by", None)
        if declared is None:
            return None
        dims = facts["spatial_dims"]
        if declared == "strides":
            return [math.prod(s[axis] for s in facts["strides"]) for axis in range(dims)]
        return [int(declared)] * dims if isinstance(declared, int) else [int(d) for d in declared]


def plan_unet(norm: str = "instance", deep_supervision: bool = True) -> NetworkChoice:
    """``network=default``: the plan's U-Net (nnU-Net's network; what nnU-Net checkpoints hold)."""
    return NetworkChoice.from_config({"_target_": PLAN_UNET, "from_plan": PLAN_UNET_FROM_PLAN, "norm": norm,
                                      "deep_supervision": deep_supervision, "patch_divisible_by": "strides"})


def checked_plan_unet(architecture: Architecture, input_channels: int, num_classes: int, patch_size: Sequence[int],
                      norm: str = "instance", deep_supervision: bool = True) -> CheckedNetwork:
    """The plan's U-Net, checked, from the parts of a plan (benchmarks, previews, tests)."""
    return check_network(plan_unet(norm, deep_supervision),
                         architecture_facts(architecture, input_channels, num_classes, patch_size))


def _positive_ints(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values) and len(values) > 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else f"{text[:57]}..."


def file_argument_problem(name: str, value: Any) -> str | None:
    """Why a network argument read from a file could make the constructor download or touch a file, or None: only
    plain values (numbers, booleans, null, text, lists and mappings of them), no text that is a URL or a path, and
    no true or text value for an argument named like a download or a file (``pretrained``, ``*_url``, ``*_path``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            stack += list(item)
        elif isinstance(item, str):
            if "://" in item or "/" in item or "\\" in item or item.startswith(("~", ".")):
                return "names a URL or a path"
        elif not (item is None or isinstance(item, (bool, int, float))):
            return f"is a {type(item).__name__}, not a plain value"
    if set(name.lower().split("_")) & _FILE_ARGUMENT_WORDS and \
            (value is True or (isinstance(value, (str, int)) and not isinstance(value, bool) and value)):
        return "asks for a download or a file"
    return None


def _shown(arguments: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if len(repr(v)) < 60 else f"{k}=..." for k, v in arguments.items())


def plan_facts(plan: Mapping[str, Any], patch_size: Sequence[int], where: str = "plan") -> dict[str, Any]:
    """Everything a network may take from the plan (:data:`PLAN_FACTS`), for a training patch ``patch_size``."""
    facts = DatasetFacts.from_plan(plan, where)
    return architecture_facts(architecture_from_plan(dict(plan), where), facts.network_input_channels,
                              facts.layout.num_outputs, patch_size)


def architecture_facts(architecture: Architecture, input_channels: int, num_classes: int,
                       patch_size: Sequence[int]) -> dict[str, Any]:
    """:func:`plan_facts` from the parts of a plan."""
    return {"input_channels": input_channels, "num_classes": num_classes,
            "spatial_dims": len(patch_size), "patch_size": [int(p) for p in patch_size],
            "architecture": asdict(architecture), "n_stages": architecture.n_stages,
            "features_per_stage": list(architecture.features_per_stage),
            "kernel_sizes": [list(k) for k in architecture.kernel_sizes],
            "strides": [list(s) for s in architecture.strides],
            "upsampling_strides": [list(s) for s in architecture.strides[1:]]}


def nearest_valid_patch(patch_size: Sequence[int], divisors: Sequence[int]) -> list[int]:
    """Each axis rounded to the nearest multiple of its divisor (up on a tie, never below one multiple)."""
    return [max(d, math.floor(p / d + 0.5) * d) for p, d in zip(patch_size, divisors, strict=True)]


@dataclass(frozen=True)
class CheckedNetwork:
    """What the check pass found: the patch to train on, the deep-supervision scales, the size."""

    choice: NetworkChoice
    facts: dict[str, Any]  # what the network was built from (the patch: the one it trains on)
    adapted_from: list[int] | None  # the patch before ``adapt_patch`` rounded it
    deep_supervision_scales: list[list[float]] | None  # per output (the first is 1s); None: one output
    parameters: int
    notes: list[str] = field(default_factory=list)

    @property
    def patch_size(self) -> list[int]:
        return list(self.facts["patch_size"])

    @property
    def outputs(self) -> int:
        return len(self.deep_supervision_scales) if self.deep_supervision_scales else 1

    def record(self) -> dict[str, Any]:
        """For the run folder (inference.json, stats): which network, on which patch, with how many outputs."""
        return {**self.choice.to_json(), "patch_size": self.patch_size, "adapted_from": self.adapted_from,
                "deep_supervision_outputs": self.outputs, "parameters": self.parameters}


def check_network(choice: NetworkChoice, facts: Mapping[str, Any], batch_size: int = 2) -> CheckedNetwork:
    """Build the network for ``facts`` (:func:`plan_facts`) and run one forward pass on a dummy batch of the
    patch's shape (on the meta device, or on the CPU for a network that cannot run there); any mismatch is a
    ``UserError`` naming the network."""
    name = f"network ({choice.target})"
    patch = list(facts["patch_size"])
    if len(patch) != len(facts["strides"][0]):
        raise UserError(f"data.patch_size={patch}: needs {len(facts['strides'][0])} axes (the plan's)")
    divisors = choice.divisors(facts)
    adapted_from = None
    if divisors and any(p % d for p, d in zip(patch, divisors, strict=True)):
        nearest = nearest_valid_patch(patch, divisors)
        if not choice.adapt_patch:
            raise UserError(f"{name} needs a patch divisible by {divisors} per axis; data.patch_size={patch} is not. "
                            f"Nearest valid patch: {nearest} (data.patch_size=[{','.join(map(str, nearest))}]), or "
                            "let nnlight adapt it: network.adapt_patch=true")
        adapted_from, patch = patch, nearest
    facts = {**facts, "patch_size": patch}
    outputs, parameters, batch_size = _dry_run(choice, facts, batch_size)
    expected = (batch_size, facts["num_classes"], *patch)
    shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else None for o in outputs]
    if None in shapes or not shapes:
        raise UserError(f"{name} returned {type(outputs).__name__} of {shapes}; it must return a tensor (or a "
                        "list of tensors for deep supervision)")
    if shapes[0] != expected:
        raise UserError(f"{name} returned shape {list(shapes[0])} for an input of shape "
                        f"{[batch_size, facts['input_channels'], *patch]}; expected {list(expected)} (batch, "
                        "num_classes, *patch)")
    scales = None
    if len(shapes) > 1:
        scales = []
        for shape in shapes:
            if shape[:2] != expected[:2] or len(shape) != len(expected) or \
                    any(p % s for p, s in zip(patch, shape[2:], strict=True)):
                raise UserError(f"{name} returned deep-supervision outputs of shapes {[list(s) for s in shapes]}; "
                                f"each must be (batch, num_classes, *size) with the patch {patch} a multiple of size")
            scales.append([s / p for s, p in zip(shape[2:], patch, strict=True)])
    notes = [f"network.adapt_patch: the patch {adapted_from} became {patch}"] if adapted_from else []
    if scales is None:
        notes.append(f"{choice.short_name} gives one output: trained without deep supervision")
    return CheckedNetwork(choice, facts, adapted_from, scales, parameters, notes)


def _dry_run(choice: NetworkChoice, facts: Mapping[str, Any], batch_size: int
             ) -> tuple[list[torch.Tensor], int, int]:
    """Outputs of one training-mode forward pass (as a list), the parameter count and the batch it ran on."""
    dummy_shape = (batch_size, facts["input_channels"], *facts["patch_size"])
    try:
        with torch.device("meta"):
            network = choice.build(facts)
            outputs = network.train()(torch.zeros(dummy_shape))
    except Exception:  # an op without a meta kernel (e.g. .item()): the same pass for real, on two samples
        network = choice.build(facts)  # (two: batch norm needs more than one value per channel in training)
        dummy_shape = (min(2, batch_size), *dummy_shape[1:])
        try:
            with torch.no_grad():
                outputs = network.train()(torch.zeros(dummy_shape))
        except Exception as e:
            raise UserError(f"network ({choice.target}) failed on an input of shape {list(dummy_shape)}: "
                            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
        listed = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return listed, sum(p.numel() for p in network.parameters()), dummy_shape[0]
    listed = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return listed, sum(p.numel() for p in network.parameters()), batch_size


class HighestResolution(nn.Module):
    """Inference takes one output: the first (highest resolution) of a network that returns a list."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.network(x)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def inference_network(choice: NetworkChoice, plan: Mapping[str, Any], patch_size: Sequence[int],
                      weights: Mapping[str, torch.Tensor] | None, where: str) -> nn.Module:
    """The trained network for prediction: built for inference, ``weights`` loaded exactly, in eval mode."""
    network = choice.build(plan_facts(plan, patch_size, where), inference=True)
    if weights is not None:
        try:
            network.load_state_dict(dict(weights))
        except RuntimeError as e:
            problem = " ".join(str(e).split())[:300]
            raise UserError(f"{where}: weights do not fit the network {choice.target} ({problem})") from None
    return HighestResolution(network).eval()
