"""nnlight: nnU-Net's self-configuring segmentation recipe on PyTorch Lightning + Hydra."""

__version__ = "0.1.0"
