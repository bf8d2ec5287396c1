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
EXTRAS ?= --extra all --extra dev

export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export UV_PYTHON_DOWNLOADS := never
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup demo test lint typecheck audit clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode $(EXTRAS) --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced
	@bash .ci/system-packages.sh

demo: setup
	$(VENV)/bin/exportguard review export-labels --out data/reviewed   # the analysts' decisions
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro
	@$(PY) -c "import json; from exportguard.training.report import render_table; print(render_table(json.load(open('models/candidate/metrics.json'))))"
	@echo
	@echo "Runs, plots and registered versions: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
	@echo "Champion bundle: models/champion/   Evaluation: metrics/evaluate.json   Method: docs/training.md"

# The review store's tests run on SQLite and on PostgreSQL: .ci/postgres.sh starts a local
# server (installing Debian's package when run as root) unless EXPORTGUARD_TEST_PG_URL is set.
test: setup
	@url="$${EXPORTGUARD_TEST_PG_URL:-}"; [ -n "$$url" ] || url=$$(bash .ci/postgres.sh) || exit 1; \
	echo "PostgreSQL for the tests at $${url##*@}"; \
	EXPORTGUARD_TEST_PG_URL="$$url" $(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	mkdir -p .mypy_root && ln -sfn .. .mypy_root/exportguard
	MYPYPATH=.mypy_root $(VENV)/bin/mypy -p exportguard

audit: setup
	$(PY) .ci/audit.py

clean:
	rm -rf data models/champion mlruns mlflow.db reports audit .pytest_cache
