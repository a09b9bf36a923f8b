"""Dataset fingerprint: spacings, shapes after cropping, foreground intensity statistics (nnU-Net's keys)."""

from nnlight.fingerprint.fingerprint import Fingerprint, compute_fingerprint, load_fingerprint

__all__ = ["Fingerprint", "compute_fingerprint", "load_fingerprint"]
