"""``python -m nnlight <plan|train|predict|evaluate|benchmark> key=value ...``."""

from nnlight.pipeline.commands import main

main()
