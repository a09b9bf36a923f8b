"""Write each planned configuration as a generated Hydra config (values only, with a provenance header).

A file the user edited is detected through the content hash recorded in its header and is never
overwritten unless asked, so hand-tuned plans survive a re-plan.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nnlight import __version__
from nnlight.planning.plans import Architecture, ConfigurationPlan, Plans
from nnlight.raw.dataset_json import DatasetJson
from nnlight.utils.files import atomic_write_text, to_jsonable

HASH_LINE = re.compile(r"^# content-sha256: ([0-9a-f]{64})", re.MULTILINE)
_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

WriteStatus = Literal["written", "updated", "unchanged", "kept (edited)", "overwritten (edited)"]


@dataclass(frozen=True)
class ConfigFile:
    configuration: str
    config_name: str  # what follows plan=<Dataset>/
    path: Path
    status: WriteStatus


def to_yaml(data: dict[str, Any], indent: int = 0) -> str:
    """Block mappings with flow-style (JSON) leaves: compact lists like ``patch_size: [40, 56, 40]``."""
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        name = key if _BARE_KEY.match(str(key)) else json.dumps(str(key))
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{name}:")
            lines.append(to_yaml(value, indent + 1))
        else:
            lines.append(f"{pad}{name}: {json.dumps(value)}")
    return "\n".join(lines)


def configuration_values(plans: Plans, plan: ConfigurationPlan, dataset_json: DatasetJson) -> dict[str, Any]:
    """Everything training and inference read from a plan: the values of a generated config (and of a run
    folder's ``plan.json``)."""
    arch = plan.architecture
    return {
        "dataset": plans.dataset_name,
        "configuration": plan.name,
        "plans_name": plans.plans_name,
        "data_identifier": plan.data_identifier,
        "spacing": plan.spacing,
        "patch_size": plan.patch_size,
        "batch_size": plan.batch_size,
        "batch_dice": plan.batch_dice,
        "median_image_size_in_voxels": plan.median_image_size_in_voxels,
        "transpose_forward": plans.transpose_forward,
        "transpose_backward": plans.transpose_backward,
        "channel_names": dataset_json.channel_name_list,
        "labels": {k: list(v) if isinstance(v, tuple) else v for k, v in dataset_json.training_labels.items()},
        "regions_class_order": list(dataset_json.regions_class_order or []) or None,
        "normalization_schemes": plan.normalization_schemes,
        "use_mask_for_norm": plan.use_mask_for_norm,
        "foreground_intensity_properties_per_channel": plans.foreground_intensity_properties_per_channel,
        "resampling": {"data": plan.resampling_data, "seg": plan.resampling_seg,
                       "probabilities": plan.resampling_probabilities},
        "architecture": {
            "network": arch.network,
            "n_stages": arch.n_stages,
            "features_per_stage": arch.features_per_stage,
            "kernel_sizes": arch.kernel_sizes,
            "strides": arch.strides,
            "blocks_per_stage": arch.blocks_per_stage,
            "n_conv_per_stage_decoder": arch.n_conv_per_stage_decoder,
            "conv_bias": arch.conv_bias,
        },
        "next_stage": plan.next_stage,
        "previous_stage": plan.previous_stage,
        **({"instances": plans.instances.to_dict()} if plans.instances is not None else {}),
    }


def configuration_from_values(values: dict[str, Any]) -> ConfigurationPlan:
    """The configuration behind plan values (a run's ``plan.json``, overrides included): the inverse of
    :func:`configuration_values` for the configuration's own fields."""
    return ConfigurationPlan(
        name=str(values["configuration"]), data_identifier=str(values["data_identifier"]),
        batch_size=int(values["batch_size"]), patch_size=[int(p) for p in values["patch_size"]],
        median_image_size_in_voxels=[float(m) for m in values["median_image_size_in_voxels"]],
        spacing=[float(s) for s in values["spacing"]], normalization_schemes=list(values["normalization_schemes"]),
        use_mask_for_norm=[bool(u) for u in values["use_mask_for_norm"]],
        resampling_data=dict(values["resampling"]["data"]), resampling_seg=dict(values["resampling"]["seg"]),
        resampling_probabilities=dict(values["resampling"]["probabilities"]),
        architecture=Architecture(**values["architecture"]), batch_dice=bool(values["batch_dice"]),
        next_stage=values.get("next_stage"), previous_stage=values.get("previous_stage"))


def configuration_body(plans: Plans, plan: ConfigurationPlan, dataset_json: DatasetJson,
                       parent_config_name: str | None) -> str:
    """The YAML values of one configuration. An inheriting one (the cascade) holds only its differences."""
    if plan.inherits_from is not None and parent_config_name is not None:
        # relative to the plan group: the parent is selected as <Dataset>/<configuration>, as on the command line
        head = f"defaults:\n  - {plans.dataset_name}/{parent_config_name}@_here_\n  - _self_\n\n"
        return head + to_yaml(to_jsonable({"configuration": plan.name, "previous_stage": plan.previous_stage,
                                           "inherits_from": plan.inherits_from})) + "\n"
    return to_yaml(to_jsonable(configuration_values(plans, plan, dataset_json))) + "\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def render_config(body: str, plans: Plans, plan: ConfigurationPlan, config_name: str, provenance: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        f"# nnlight plan for {plans.dataset_name} / {plan.name} — generated, values only.",
        f"# nnlight {__version__} | planner preset {plans.planner!r} ({plans.plans_name}) | {provenance} | {now}",
        f"# Use: nnlight-train plan={plans.dataset_name}/{config_name}  (override values: plan.batch_size=4)",
    ]
    header += [f"# why: {note}" for note in plan.notes]
    header.append(f"# content-sha256: {_sha(body)}  (edited files are kept on re-plan; overwrite_configs=true "
                  "replaces them)")
    return "\n".join(header) + "\n" + body


def is_user_edited(text: str) -> bool:
    """True when the body no longer matches the hash nnlight recorded when it wrote the file."""
    match = HASH_LINE.search(text)
    if match is None:
        return True
    body = text[text.index("\n", match.end()) + 1:]
    return _sha(body) != match.group(1)


def _body_of(text: str) -> str:
    match = HASH_LINE.search(text)
    return text[text.index("\n", match.end()) + 1:] if match else text


def config_name(configuration: str, suffix: str) -> str:
    return f"{configuration}{suffix}"


def write_plan_configs(plans: Plans, dataset_json: DatasetJson, configs_root: Path, suffix: str,
                       provenance: str, overwrite_edited: bool = False) -> list[ConfigFile]:
    """Write ``<configs_root>/plan/<Dataset>/<configuration><suffix>.yaml`` for every configuration."""
    out_dir = configs_root / "plan" / plans.dataset_name
    written = []
    for name, plan in plans.configurations.items():
        cfg_name = config_name(name, suffix)
        parent = config_name(plan.inherits_from, suffix) if plan.inherits_from else None
        body = configuration_body(plans, plan, dataset_json, parent)
        path = out_dir / f"{cfg_name}.yaml"
        status: WriteStatus = "written"
        if path.is_file():
            existing = path.read_text(encoding="utf-8")
            if is_user_edited(existing):
                if not overwrite_edited:
                    written.append(ConfigFile(name, cfg_name, path, "kept (edited)"))
                    continue
                status = "overwritten (edited)"
            elif _body_of(existing) == body:
                written.append(ConfigFile(name, cfg_name, path, "unchanged"))
                continue
            else:
                status = "updated"
        atomic_write_text(path, render_config(body, plans, plan, cfg_name, provenance))
        written.append(ConfigFile(name, cfg_name, path, status))
    return written
