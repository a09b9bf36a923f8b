"""The plan as data: one ``ConfigurationPlan`` per configuration, and conversion to/from nnU-Net's plans JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

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

    network: str
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


def _network_from_class_name(class_name: str, where: str) -> str:
    short = class_name.rsplit(".", 1)[-1]
    if short not in NNUNET_NETWORK_CLASSES:
        raise UserError(f"{where}: network {class_name!r} is not supported by nnlight; supported: "
                        f"{', '.join(NNUNET_NETWORK_CLASSES.values())}")
    return short


def _configuration_from_nnunet(name: str, raw: dict[str, Any], where: str) -> ConfigurationPlan:
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

