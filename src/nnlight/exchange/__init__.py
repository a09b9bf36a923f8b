"""Trained models in and out of nnlight: nnU-Net model folders and checkpoints, model zips."""
