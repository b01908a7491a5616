# ecdctr — developer entry points. `make demo` and `make test` create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

TOOLS := .tools-venv
PY312 ?= $(shell PYENV_VERSION=3.12.1 command -v python3.12 >/dev/null 2>&1 && echo "env PYENV_VERSION=3.12.1 python3.12" || echo python3.12)

.PHONY: venv tools demo test test-fast java bench bench-features bench-train bench-serving lint-deploy clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v java >/dev/null 2>&1 || $(MAKE) java
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "ecdctr needs Python 3.11, got %s" % sys.version.split()[0]'
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

java:
	@echo "java not found: installing openjdk-17-jre-headless with apt"
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless

# The main job, end to end on the embedded default (local store, Spark local, TF CPU, Airflow SQLite).
demo: venv
	$(BIN)/ecdctr demo

# The whole suite, slow end-to-end tests included (CI runs this).
test: venv
	$(BIN)/python -m pytest -q

# Unit tests only: no Spark, no Airflow DB, no S3 server.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration and not slow"

# Benchmarks print a table with ratios against a reference measured in the same run.
bench: bench-features bench-train bench-serving

bench-features: venv
	$(BIN)/python benchmarks/bench_features.py

bench-train: venv
	$(BIN)/python benchmarks/bench_train.py

bench-serving: venv
	$(BIN)/python benchmarks/bench_serving.py

# Deployment linters (hadolint, Helm's lint via helm-sdkpy, kubernetes-validate) need Python >= 3.12.
tools: $(TOOLS)/.installed

$(TOOLS)/.installed: requirements-tools.txt
	@test -x $(TOOLS)/bin/python || $(PY312) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q -r requirements-tools.txt
	@touch $@

lint-deploy: venv tools
	$(BIN)/python -m ecdctr_pipeline.orchestration.pods --out build/k8s
	$(TOOLS)/bin/python scripts/lint_deploy.py --values helm/ecdctr/values-production.yaml --manifests build/k8s

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache ecdctr-data build reports
