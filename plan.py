"""Verify, fingerprint and plan a raw nnU-Net-format dataset: ``python plan.py dataset=<name or folder>``."""

from nnlight.pipeline.commands import plan

if __name__ == "__main__":
    plan()
