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
	$(BIN)/ruff format --check chalicelib portside portside_edge app.py

typecheck: venv
	$(BIN)/mypy chalicelib portside portside_edge app.py

unit: venv
	$(BIN)/python -m pytest -q tests/unit

## Everything: lint, types, unit, integration (moto), conformance and e2e (real clients).
test: system-deps venv infra-deps lint typecheck
	$(BIN)/python -m pytest -q --timeout=900 --durations=40 tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## ---------------------------------------------------------------- AWS deployment (infra/)
## See docs/deploy.md. `make synth` works offline (placeholder account and region);
## `make deploy STAGE=dev` and `make destroy STAGE=dev` need AWS credentials (and docker
## for the upload host image). Stages are defined in infra/stages.py.
STAGE ?= dev
## cdk's --require-approval for `make deploy`: `broadening` (default) stops and asks before a
## deploy widens IAM or security groups, which needs a terminal; CI and other
## non-interactive runs pass APPROVAL=never (`make deploy STAGE=dev APPROVAL=never`).
APPROVAL ?= broadening
SYNTH_ACCOUNT ?= 123456789012
SYNTH_REGION ?= us-east-1
CDK_ENV := JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 CDK_DISABLE_VERSION_CHECK=1
CDK := cd infra && $(CDK_ENV) node_modules/.bin/cdk

.PHONY: infra-deps synth deploy destroy

$(VENV)/.infra-deps: infra/requirements.txt $(BIN)/activate
	$(BIN)/pip install --quiet -r infra/requirements.txt
	touch $@

infra/node_modules/.installed: infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The CDK libraries and cfn-lint (into .venv) and the CDK CLI (npm, into infra/node_modules).
infra-deps: venv $(VENV)/.infra-deps infra/node_modules/.installed

## Synthesise every stage offline into infra/cdk.out/ (no AWS account needed).
synth: infra-deps
	rm -rf infra/cdk.out
	cd infra && $(CDK_ENV) AWS_EC2_METADATA_DISABLED=true CDK_DEFAULT_ACCOUNT=$(SYNTH_ACCOUNT) \
	  CDK_DEFAULT_REGION=$(SYNTH_REGION) AWS_DEFAULT_REGION=$(SYNTH_REGION) \
	  node_modules/.bin/cdk synth --quiet --no-notices --no-version-reporting \
	  && echo "synthesised into infra/cdk.out/:" $$(cd cdk.out && ls *.template.json)

## Deploy one stage with your AWS credentials (bootstraps the account/region the first time,
## and us-east-1 too, where the Lambda@Edge function lives). A stage that still has the
## example domain/zone/e-mail of infra/stages.py is refused before anything is created.
deploy: infra-deps
	$(CDK) bootstrap -c stage=$(STAGE) --no-notices
	$(CDK) deploy -c stage=$(STAGE) --no-notices --require-approval $(APPROVAL) \
	  --outputs-file cdk.out/outputs-$(STAGE).json Portside-$(STAGE)

## Delete one stage (stages with retain_data keep their table, buckets and secret).
destroy: infra-deps
	$(CDK) destroy -c stage=$(STAGE) --no-notices --force Portside-$(STAGE)

.PHONY: bench
## Benchmarks (bench/README.md): Portside next to distribution 2.8, AWS calls per operation,
## upload memory, cold start; prints a table, saves bench/results/<timestamp>.json and
## regenerates docs/cost.md from the measured call counts.
bench: system-deps venv
	bash bench/install-deps.sh
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.cost_model
