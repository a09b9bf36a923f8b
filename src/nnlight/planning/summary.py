"""A readable end-of-planning summary: one row per configuration, plus the reason for each choice."""

from __future__ import annotations

from collections.abc import Sequence

from nnlight.planning.plan_configs import ConfigFile
from nnlight.planning.plans import Plans

_NORM_SHORT = {"ZScoreNormalization": "zscore", "CTNormalization": "ct", "NoNormalization": "none",
               "RescaleTo01Normalization": "rescale01", "RGBTo01Normalization": "rgb01"}


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for k, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if k == 0:
            out.append(line)
    out.append(line)
    return out


def format_summary(plans: Plans, files: Sequence[ConfigFile]) -> str:
    rows = [("config (plan=...)", "spacing", "patch", "batch", "stages", "network", "normalization", "file")]
    file_by_cfg = {f.configuration: f for f in files}
    for name, c in plans.configurations.items():
        norm = ", ".join(_NORM_SHORT.get(s, s) + ("+mask" if m else "")
                         for s, m in zip(c.normalization_schemes, c.use_mask_for_norm, strict=True))
        f = file_by_cfg.get(name)
        rows.append((f"{plans.dataset_name}/{f.config_name if f else name}",
                     "x".join(f"{s:.3g}" for s in c.spacing), "x".join(map(str, c.patch_size)),
                     str(c.batch_size), str(c.architecture.n_stages), c.architecture.network, norm,
                     f.status if f else "-"))
    lines = [f"Plans for {plans.dataset_name} (preset {plans.planner}, {plans.plans_name}):", *_table(rows)]
    reasons = [f"  {name}: {note}" for name, c in plans.configurations.items() for note in c.notes]
    reasons += [f"  dataset: {note}" for note in plans.notes]
    if reasons:
        lines += ["Why:", *reasons]
    return "\n".join(lines)
