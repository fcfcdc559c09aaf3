# Portside: `make run` serves the registry locally; `make test` installs and runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export PORT

.PHONY: run test lint typecheck unit integration conformance e2e system-deps venv clean

$(BIN)/activate: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

venv: $(BIN)/activate

## Serve the registry on http://127.0.0.1:$(PORT) with moto on loopback standing in for AWS.
run: venv
	$(BIN)/portside serve --port $(PORT)

## Debian packages the end-to-end tests drive (skopeo, podman, buildah, containerd, docker).
system-deps:
	bash scripts/install-e2e-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check chalicelib app.py

typecheck: venv
	$(BIN)/mypy chalicelib app.py

unit: venv
	$(BIN)/python -m pytest -q tests/unit

## Everything: lint, types, unit, integration (moto), conformance and e2e (real clients).
test: system-deps venv lint typecheck
	$(BIN)/python -m pytest -q --timeout=900 tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
