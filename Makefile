# exportguard: two commands set up everything on a fresh machine.
#   make demo   - the main job end to end on the embedded defaults (local files, local MLflow store)
#   make test   - the test suite
# Both create .venv from the committed uv.lock on first use (uv itself is bootstrapped with pip
# into .tools/, so nothing is installed outside the project folder).

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS ?= --extra dev --extra spark

export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export UV_PYTHON_DOWNLOADS := never
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup demo test lint audit clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen $(EXTRAS) --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(VENV)/bin/exportguard generate --out data/world --accounts 20000 --seed 7
	$(VENV)/bin/exportguard validate --data data/world
	$(VENV)/bin/exportguard features --data data/world --out data/features/snapshot.parquet

test: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

audit: setup
	$(PY) .ci/audit.py

clean:
	rm -rf data models/champion mlruns mlflow.db reports audit .pytest_cache
