"""Inference: sliding window with Gaussian weighting, mirroring TTA, ensembles, export to the original geometry."""
