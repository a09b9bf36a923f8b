"""Evaluation: per-case and per-label metrics with nnU-Net's definitions, summaries."""
