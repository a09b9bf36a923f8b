"""Segment images with a trained model: ``python predict.py model=<folder>|best input=<images> output=<folder>``."""

from nnlight.pipeline.commands import predict

if __name__ == "__main__":
    predict()
