"""Plain ``nn.Module`` networks with plan-shaped constructor arguments (they never see a plan or config)."""

from nnlight.nets.unet import NETWORKS, PlainConvUNet, PlanUNet, ResidualEncoderUNet, build_network

__all__ = ["NETWORKS", "PlainConvUNet", "PlanUNet", "ResidualEncoderUNet", "build_network"]
