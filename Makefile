# nnlight developer commands. `make demo` and `make test` are the README's first commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch is installed first: a plain `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine: make install TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
# The demo trains for minutes, not days: a real (not debug) run, so evaluate.py may select it.
DEMO_BUDGET := trainer.max_epochs=2 data.iterations_per_epoch=2 data.val_iterations_per_epoch=1 data.num_workers=0

# The default suite on two workers, one test file per worker at a time (a file's fixtures are made once)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: install demo wheel test test-unit test-all lint typecheck bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e ".[dev]"  # setuptools notice
	touch $@

# the same commands a pip-installed nnlight has on the PATH
demo: install
	$(BIN)/nnlight-demo-data raw=data/raw
	$(BIN)/nnlight-plan dataset=Dataset900_Demo
	$(BIN)/nnlight-train plan=Dataset900_Demo/3d_fullres $(DEMO_BUDGET)
	$(BIN)/nnlight-train plan=Dataset900_Demo/2d $(DEMO_BUDGET)
	$(BIN)/nnlight-evaluate dataset=Dataset900_Demo folds=0
	$(BIN)/nnlight-predict model=best dataset=Dataset900_Demo input=data/raw/Dataset900_Demo/imagesTs \
		output=data/predictions/Dataset900_Demo reference=data/raw/Dataset900_Demo/labelsTs

# dist/nnlight-<version>-py3-none-any.whl: configs and commands included (pip install it anywhere)
wheel: install
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# unit + integration + cli tiers (tests marked slow are left out), after the type check
test: install typecheck
	$(PYTEST)

# in-process tests without training: seconds
test-unit: install
	$(BIN)/python -m pytest -m unit

test-all: install typecheck
	$(PYTEST) -m "slow or not slow"

typecheck: install
	$(BIN)/mypy

lint: install
	$(BIN)/ruff check src tests benchmarks plan.py train.py predict.py evaluate.py benchmark.py

bench: install
	$(BIN)/python benchmarks/plan_speed.py ../shared/datasets/Dataset101_BraTS2015Mini
