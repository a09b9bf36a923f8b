"""nnlight: nnU-Net's self-configuring segmentation recipe on PyTorch Lightning + Hydra."""

from importlib.metadata import PackageNotFoundError, version

try:  # the installed package's version (pyproject.toml's), so a wheel and a checkout report the same way
    __version__ = version("nnlight")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown (not installed)"
