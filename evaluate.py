"""Score predictions, cross-validation and the best configuration: ``python evaluate.py dataset=<Dataset>``."""

from nnlight.pipeline.commands import evaluate

if __name__ == "__main__":
    evaluate()
