# Every target sets up .venv on first use, so a fresh clone needs only `make train` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_WORKERS ?= auto

.PHONY: install train test lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependency declaration changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python src/train.py $(ARGS)

# Two workers (one per core of the reference machine); a test file's tests share a worker, so
# its module-scoped fixtures (the real sweeps) are built once. PYTEST_ARGS adds to it.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into site/; --strict: any warning fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/train_time.py
	$(BIN)/python benchmarks/metrics_speed.py

clean:
	rm -rf outputs multirun logs wandb .pytest_cache
