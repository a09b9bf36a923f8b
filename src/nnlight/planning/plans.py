"""The plan as data: one ``ConfigurationPlan`` per configuration, and conversion to/from nnU-Net's plans JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nnlight.nets.unet import NetworkName
from nnlight.raw.instances import InstancePlan
from nnlight.utils.errors import UserError
from nnlight.utils.files import to_jsonable

NNUNET_NETWORK_CLASSES = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
}
_BLOCKS_KEY = {"PlainConvUNet": "n_conv_per_stage", "ResidualEncoderUNet": "n_blocks_per_stage"}
_ARCH_KEYS = ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage_decoder", "conv_bias")
_RESAMPLING_FN = "resample_data_or_seg_to_shape"


@dataclass(frozen=True)
class Architecture:
    """Constructor arguments of a network in ``nnlight.nets`` (besides input channels and classes)."""

    network: NetworkName
    n_stages: int
    features_per_stage: list[int]
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    blocks_per_stage: list[int]  # conv blocks (plain) or residual blocks (ResEnc) per encoder stage
    n_conv_per_stage_decoder: list[int]
    conv_bias: bool = True

    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nnlight.nets.build_network`` (input channels and classes come separately)."""
        kwargs = {k: getattr(self, k) for k in _ARCH_KEYS}
        kwargs[_BLOCKS_KEY[self.network]] = self.blocks_per_stage
        return kwargs


@dataclass(frozen=True)
class ConfigurationPlan:
    name: str
    data_identifier: str
    batch_size: int
    patch_size: list[int]
    median_image_size_in_voxels: list[float]
    spacing: list[float]
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    resampling_data: dict[str, Any]
    resampling_seg: dict[str, Any]
    resampling_probabilities: dict[str, Any]
    architecture: Architecture
    batch_dice: bool
    preprocessor_name: str = "DefaultPreprocessor"
    next_stage: str | None = None
    previous_stage: str | None = None
    inherits_from: str | None = None
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def dimension(self) -> int:
        return len(self.patch_size)


@dataclass(frozen=True)
class Plans:
    dataset_name: str
    plans_name: str
    planner: str
    transpose_forward: list[int]
    transpose_backward: list[int]
    original_median_spacing_after_transp: list[float]
    original_median_shape_after_transp: list[int]
    image_reader_writer: str
    foreground_intensity_properties_per_channel: dict[str, dict[str, float]]
    configurations: dict[str, ConfigurationPlan]
    experiment_planner_used: str = "ExperimentPlanner"
    instances: InstancePlan | None = None  # instance datasets: the border-core conversion (nnlight only)
    notes: list[str] = field(default_factory=list, compare=False)


def _configuration_to_nnunet(plan: ConfigurationPlan) -> dict[str, Any]:
    if plan.inherits_from is not None:
        out: dict[str, Any] = {"inherits_from": plan.inherits_from}
        if plan.previous_stage:
            out["previous_stage"] = plan.previous_stage
        return out
    arch = plan.architecture
    dim = plan.dimension
    arch_kwargs = {
        "n_stages": arch.n_stages,
        "features_per_stage": arch.features_per_stage,
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": arch.kernel_sizes,
        "strides": arch.strides,
        _BLOCKS_KEY[arch.network]: arch.blocks_per_stage,
        "n_conv_per_stage_decoder": arch.n_conv_per_stage_decoder,
        "conv_bias": arch.conv_bias,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    out = {
        "data_identifier": plan.data_identifier,
        "preprocessor_name": plan.preprocessor_name,
        "batch_size": plan.batch_size,
        "patch_size": plan.patch_size,
        "median_image_size_in_voxels": plan.median_image_size_in_voxels,
        "spacing": plan.spacing,
        "normalization_schemes": plan.normalization_schemes,
        "use_mask_for_norm": plan.use_mask_for_norm,
        "resampling_fn_data": _RESAMPLING_FN,
        "resampling_fn_seg": _RESAMPLING_FN,
        "resampling_fn_data_kwargs": plan.resampling_data,
        "resampling_fn_seg_kwargs": plan.resampling_seg,
        "resampling_fn_probabilities": _RESAMPLING_FN,
        "resampling_fn_probabilities_kwargs": plan.resampling_probabilities,
        "architecture": {
            "network_class_name": NNUNET_NETWORK_CLASSES[arch.network],
            "arch_kwargs": arch_kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": plan.batch_dice,
    }
    if plan.next_stage:
        out["next_stage"] = plan.next_stage
    return out


def plans_to_nnunet(plans: Plans) -> dict[str, Any]:
    """nnU-Net v2's ``nnUNetPlans.json`` layout, loadable by nnU-Net's PlansManager."""
    return to_jsonable({
        "dataset_name": plans.dataset_name,
        "plans_name": plans.plans_name,
        "original_median_spacing_after_transp": plans.original_median_spacing_after_transp,
        "original_median_shape_after_transp": plans.original_median_shape_after_transp,
        "image_reader_writer": plans.image_reader_writer,
        "transpose_forward": plans.transpose_forward,
        "transpose_backward": plans.transpose_backward,
        "configurations": {name: _configuration_to_nnunet(c) for name, c in plans.configurations.items()},
        "experiment_planner_used": plans.experiment_planner_used,
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": plans.foreground_intensity_properties_per_channel,
    })


def _network_from_class_name(class_name: str, where: str) -> NetworkName:
    short = class_name.rsplit(".", 1)[-1]
    if short == "PlainConvUNet":
        return "PlainConvUNet"
    if short == "ResidualEncoderUNet":
        return "ResidualEncoderUNet"
    raise UserError(f"{where}: network {class_name!r} is not supported by nnlight; supported: "
                    f"{', '.join(NNUNET_NETWORK_CLASSES.values())}")


# What nnlight's networks build (nets/blocks.py): nnU-Net's ops by the names its plans spell them
_SUPPORTED_OPS = {"conv_op": ("torch.nn.modules.conv.Conv{dim}d", "torch.nn.Conv{dim}d"),
                  "norm_op": ("torch.nn.modules.instancenorm.InstanceNorm{dim}d", "torch.nn.InstanceNorm{dim}d",
                              "torch.nn.modules.batchnorm.BatchNorm{dim}d", "torch.nn.BatchNorm{dim}d"),
                  "nonlin": ("torch.nn.LeakyReLU", "torch.nn.modules.activation.LeakyReLU"),
                  "dropout_op": (None,)}
MAX_STAGES, MAX_FEATURES, MAX_PATCH_AXIS, MAX_PATCH_VOXELS = 16, 8192, 8192, 2**30


def _ops_problem(kwargs: dict[str, Any], dim: int) -> str | None:
    """A conv/norm/nonlinearity/dropout nnlight's networks do not build, named with what they do build."""
    for key, names in _SUPPORTED_OPS.items():
        value = kwargs.get(key, names[0] if key != "dropout_op" else None)
        allowed = [n.format(dim=dim) if n else n for n in names]
        if value not in allowed:
            return (f"arch_kwargs.{key}={value!r} is not what nnlight's networks build "
                    f"({' or '.join(str(a) for a in allowed[:2] if a) or 'none'})")
    return None


def architecture_problem(a: Architecture, dim: int) -> str | None:
    """Why an architecture describes no network nnlight can build sanely, or None: consistent stage counts, kernel
    and stride sizes per axis, bounded sizes (a file from elsewhere must not make nnlight allocate without limit)."""
    per_stage: dict[str, Sequence[object]] = {
        "features_per_stage": a.features_per_stage, "kernel_sizes": a.kernel_sizes, "strides": a.strides,
        "blocks_per_stage": a.blocks_per_stage}
    if not 1 <= a.n_stages <= MAX_STAGES:
        return f"n_stages={a.n_stages}: use 1 to {MAX_STAGES}"
    for key, values in per_stage.items():
        if len(values) != a.n_stages:
            return f"{key} has {len(values)} entries for n_stages={a.n_stages}"
    if len(a.n_conv_per_stage_decoder) != a.n_stages - 1:
        return (f"n_conv_per_stage_decoder has {len(a.n_conv_per_stage_decoder)} entries for {a.n_stages - 1} "
                "decoder stages")
    if any(len(k) != dim for k in a.kernel_sizes) or any(len(st) != dim for st in a.strides):
        return f"kernel_sizes and strides need {dim} entries per stage"
    if any(k < 1 or k > 15 or k % 2 == 0 for ks in a.kernel_sizes for k in ks):
        return f"kernel_sizes {a.kernel_sizes}: odd sizes from 1 to 15"
    if any(st < 1 or st > 8 for sts in a.strides for st in sts):
        return f"strides {a.strides}: 1 to 8"
    if any(f < 1 or f > MAX_FEATURES for f in a.features_per_stage) or \
            any(b < 1 or b > 64 for b in (*a.blocks_per_stage, *a.n_conv_per_stage_decoder)):
        return f"features_per_stage {a.features_per_stage} or the blocks per stage are out of range"
    return None


def configuration_problem(plan: ConfigurationPlan) -> str | None:
    """:func:`architecture_problem`, and a patch and spacing of the configuration's dimension within bounds."""
    dim = plan.dimension
    if dim not in (2, 3) or len(plan.spacing) != dim:
        return f"patch_size {plan.patch_size} and spacing {plan.spacing}: give both 2 or 3 axes"
    problem = architecture_problem(plan.architecture, dim)
    if problem:
        return problem
    voxels = 1
    for p in plan.patch_size:
        voxels *= p
    if any(p < 1 or p > MAX_PATCH_AXIS for p in plan.patch_size) or voxels > MAX_PATCH_VOXELS:
        return f"patch_size {plan.patch_size}: each axis 1 to {MAX_PATCH_AXIS}, at most {MAX_PATCH_VOXELS} voxels"
    if not all(0 < x < float("inf") for x in plan.spacing):
        return f"spacing {plan.spacing}: every axis must be a positive, finite number"
    if not 1 <= plan.batch_size <= 100_000:
        return f"batch_size={plan.batch_size}: 1 to 100000"
    return None


def architecture_from_plan(plan: dict[str, Any], where: str) -> Architecture:
    """The architecture of a plan's values (a run folder's plan.json, a plan config), checked."""
    try:
        architecture = Architecture(**plan["architecture"])
        problem = architecture_problem(architecture, len(plan["patch_size"]))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: architecture is malformed ({e}); re-run nnlight-plan with overwrite_configs=true "
                        "to regenerate it") from None
    if problem:
        raise UserError(f"{where}: architecture: {problem}; re-run nnlight-plan with overwrite_configs=true to "
                        "regenerate it")
    return architecture


def _configuration_from_nnunet(name: str, raw: dict[str, Any], where: str) -> ConfigurationPlan:
    plan = _parse_configuration(name, raw, where)
    problem = _ops_problem(raw["architecture"]["arch_kwargs"], plan.dimension) or configuration_problem(plan)
    if problem:
        raise UserError(f"{where}: configuration {name!r}: {problem}; this plans file describes no network nnlight "
                        "can build")
    return plan


def _parse_configuration(name: str, raw: dict[str, Any], where: str) -> ConfigurationPlan:
    try:
        arch_raw = raw["architecture"]
        network = _network_from_class_name(arch_raw["network_class_name"], where)
        kwargs = arch_raw["arch_kwargs"]
        architecture = Architecture(
            network=network,
            n_stages=int(kwargs["n_stages"]),
            features_per_stage=[int(f) for f in kwargs["features_per_stage"]],
            kernel_sizes=[[int(k) for k in ks] for ks in kwargs["kernel_sizes"]],
            strides=[[int(s) for s in st] for st in kwargs["strides"]],
            blocks_per_stage=[int(b) for b in kwargs[_BLOCKS_KEY[network]]],
            n_conv_per_stage_decoder=[int(b) for b in kwargs["n_conv_per_stage_decoder"]],
            conv_bias=bool(kwargs.get("conv_bias", True)),
        )
        return ConfigurationPlan(
            name=name,
            data_identifier=raw["data_identifier"],
            preprocessor_name=raw.get("preprocessor_name", "DefaultPreprocessor"),
            batch_size=int(raw["batch_size"]),
            patch_size=[int(p) for p in raw["patch_size"]],
            median_image_size_in_voxels=[float(m) for m in raw["median_image_size_in_voxels"]],
            spacing=[float(s) for s in raw["spacing"]],
            normalization_schemes=list(raw["normalization_schemes"]),
            use_mask_for_norm=[bool(u) for u in raw["use_mask_for_norm"]],
            resampling_data=dict(raw["resampling_fn_data_kwargs"]),
            resampling_seg=dict(raw["resampling_fn_seg_kwargs"]),
            resampling_probabilities=dict(raw["resampling_fn_probabilities_kwargs"]),
            architecture=architecture,
            batch_dice=bool(raw["batch_dice"]),
            next_stage=raw.get("next_stage"),
            previous_stage=raw.get("previous_stage"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: configuration {name!r} is incomplete or malformed ({e!r})") from None


def _resolve(name: str, raw_configs: dict[str, Any], where: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise UserError(f"{where}: configurations inherit from each other in a loop: {' -> '.join((*seen, name))}")
    if name not in raw_configs:
        raise UserError(f"{where}: configuration {seen[-1]!r} inherits from unknown {name!r}")
    raw = raw_configs[name]
    parent = raw.get("inherits_from")
    if parent is None:
        return raw
    merged = dict(_resolve(parent, raw_configs, where, (*seen, name)))
    merged.update({k: v for k, v in raw.items() if k != "inherits_from"})
    return merged


def plans_from_nnunet(data: dict[str, Any], where: str = "nnUNetPlans.json") -> Plans:
    """Read an nnU-Net v2 plans file; inheriting configurations (the cascade) are resolved."""
    try:
        raw_configs = data["configurations"]
        configurations = {}
        for name, raw in raw_configs.items():
            plan = _configuration_from_nnunet(name, _resolve(name, raw_configs, where), where)
            if raw.get("inherits_from"):
                plan = replace(plan, inherits_from=raw["inherits_from"])
            configurations[name] = plan
        return Plans(
            dataset_name=data["dataset_name"],
            plans_name=data["plans_name"],
            planner=data.get("experiment_planner_used", "imported"),
            transpose_forward=[int(i) for i in data["transpose_forward"]],
            transpose_backward=[int(i) for i in data["transpose_backward"]],
            original_median_spacing_after_transp=[float(s) for s in data["original_median_spacing_after_transp"]],
            original_median_shape_after_transp=[int(s) for s in data["original_median_shape_after_transp"]],
            image_reader_writer=data.get("image_reader_writer", "SimpleITKIO"),
            foreground_intensity_properties_per_channel=data["foreground_intensity_properties_per_channel"],
            configurations=configurations,
            experiment_planner_used=data.get("experiment_planner_used", "ExperimentPlanner"),
        )
    except KeyError as e:
        raise UserError(f"{where}: not an nnU-Net plans file (missing key {e})") from None

