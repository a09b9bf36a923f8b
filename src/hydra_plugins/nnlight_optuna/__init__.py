"""Hydra finds sweepers only in the ``hydra_plugins`` namespace: nnlight's resumable Optuna sweeper lives here."""
