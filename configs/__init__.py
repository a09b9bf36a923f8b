"""nnlight's Hydra configs, shipped inside the package as ``nnlight.configs`` (see pyproject.toml)."""
