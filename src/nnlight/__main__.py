"""``python -m nnlight <plan|train|predict|evaluate|benchmark> key=value ...``."""

from nnlight.commands import main

main()
