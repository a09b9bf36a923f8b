"""Experiment planning: nnU-Net's rules, topology search, presets, plans import/export, Hydra config export."""

from nnlight.planning.planner import plan_experiment
from nnlight.planning.plans import ConfigurationPlan, Plans, plans_from_nnunet, plans_to_nnunet
from nnlight.planning.settings import PlannerSettings

__all__ = ["ConfigurationPlan", "PlannerSettings", "Plans", "plan_experiment", "plans_from_nnunet",
           "plans_to_nnunet"]
