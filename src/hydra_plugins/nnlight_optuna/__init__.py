"""Hydra finds sweepers only in the ``hydra_plugins`` namespace: nnlight's Optuna search lives here."""
