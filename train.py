"""Train one fold of a planned configuration: ``python train.py plan=<Dataset>/<configuration> data.fold=0``."""

from nnlight.pipeline.commands import train

if __name__ == "__main__":
    train()
