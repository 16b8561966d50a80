# ModelService operator — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ALIBI_VENV := .venv-alibi
ALIBI_STAMP := $(ALIBI_VENV)/.installed
PY_SOURCES := operator runtime tests bench hack
PYTEST_ARGS ?=
BENCH_N ?= 200
CLIENT_N ?= 1000

.PHONY: help
help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- set-up ------------------------------------------------------------------------------------

.PHONY: install
install: $(STAMP) ## Create .venv and install both packages (editable) with their test extras (and the OIP clients)

$(STAMP): operator/pyproject.toml runtime/pyproject.toml hack/pyproject.toml hack/install-python.sh
	@hack/install-python.sh "$(PYTHON)" "$(VENV)" "./operator[test]" "./runtime[test,clients]" ./hack
	@touch $@

# alibi-detect pins numpy < 2 and pulls ~0.9 GB of TensorFlow, so it lives in a venv of its own:
# the main venv stays what users install, and only the `alibi`-marked tests run here.
.PHONY: install-alibi
install-alibi: $(ALIBI_STAMP) ## Create .venv-alibi: the runtime with the alibi-detect engine (for its tests)

$(ALIBI_STAMP): runtime/pyproject.toml hack/pyproject.toml hack/install-python.sh
	@hack/install-python.sh "$(PYTHON)" "$(ALIBI_VENV)" "./runtime[test,alibi]" ./hack
	@touch $@

.PHONY: system-deps
system-deps: ## Install the Debian packages the tests use (prometheus, promtool, lua5.1, wrk)
	@hack/install-system-deps.sh

.PHONY: tools
tools: ## Build (or reuse from the cache) the pinned control-plane binaries
	@hack/control-plane-build.sh >/dev/null

# --- local control plane -----------------------------------------------------------------------

# CLUSTER_NODE=kwok: the KWOK node only, for machines without namespaces (CI never uses it).
CLUSTER_NODE ?= real

.PHONY: cluster-up
cluster-up: tools system-deps ## Start the control plane, a real node (containerd, kubelet, CoreDNS) and a KWOK node
	@CLUSTER_NODE=$(CLUSTER_NODE) hack/cluster.sh up

.PHONY: images
images: system-deps ## Build the runtime, operator and pause images (buildah, no Docker); import them into a running real node
	@set -e; out=$$(hack/images.sh); \
	PYTHONPATH=hack python3 -m aiops_harness.localcluster import --state-dir .cluster \
	  $$(echo "$$out" | sed -n 's/^\(runtime\|operator\)_archive=//p'); \
	echo "$$out" | grep -E '^(runtime|operator)='

.PHONY: cluster-down
cluster-down: ## Stop the local control plane (and the GitOps stack) and remove its state
	@PYTHONPATH=hack python3 -m aiops_harness.gitops down --cluster-state .cluster
	@hack/cluster.sh down

.PHONY: argocd
argocd: ## Build (or reuse from the cache) the pinned Argo CD (about 6-10 min cold)
	@hack/argocd-build.sh >/dev/null

.PHONY: gitops-up
gitops-up: system-deps argocd delivery-tools ## Start Argo CD (repo-server, application-controller), Redis and a Git server on the running cluster; last line git=<URL>
	@PYTHONPATH=hack python3 -m aiops_harness.gitops up --cluster-state .cluster

.PHONY: gitops-down
gitops-down: ## Stop what gitops-up started
	@PYTHONPATH=hack python3 -m aiops_harness.gitops down --cluster-state .cluster

.PHONY: cluster-status
cluster-status: ## Show what the local control plane runs and whether it answers
	@hack/cluster.sh status

# --- quality -----------------------------------------------------------------------------------

.PHONY: lint
lint: install ## ruff lint and format check
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

.PHONY: fmt
fmt: install ## Apply ruff's formatter and autofixes
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

.PHONY: typecheck
typecheck: install ## mypy on both packages
	$(BIN)/mypy operator/aiops_operator runtime/aiops_runtime

.PHONY: test
test: install install-alibi system-deps tools delivery-tools argocd lint typecheck ## Everything CI runs: lint, mypy, unit and integration tests
	$(BIN)/pytest -m "not alibi" $(PYTEST_ARGS)
	$(ALIBI_VENV)/bin/pytest -m alibi tests/runtime $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && [ -n "$(PYTEST_ARGS)" ] || exit $$rc; }

.PHONY: test-unit
test-unit: install ## Only the tests that need no control plane or external server
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

# --- the product -------------------------------------------------------------------------------

.PHONY: demo
demo: install tools system-deps ## The main job: the whole loop in real containers on the local cluster (DEMO_ARGS=--keep)
	@hack/demo.sh $(DEMO_ARGS)

.PHONY: crds
crds: install ## Regenerate crds/, the chart's CRD copy and RBAC rules from the operator's code
	$(BIN)/aiops-operator generate-crd > crds/modelservices.aiops-quality.io.yaml
	@mkdir -p charts/aiops-operator/crds charts/aiops-operator/files
	cp crds/modelservices.aiops-quality.io.yaml charts/aiops-operator/crds/
	$(BIN)/aiops-operator generate-rbac > charts/aiops-operator/files/rbac-rules.yaml

.PHONY: lock
lock: ## Regenerate the images' hash-locked requirements (runtime/, operator/, hack/build-requirements.lock)
	bash hack/lock.sh

.PHONY: example-model
example-model: install ## Retrain the example model into examples/models/breast-cancer and pin its new digests
	$(BIN)/aiops-runtime train --out examples/models/breast-cancer --seed 42 --force
	$(BIN)/python .ci/retrain/bump-modelservice.py --file examples/modelservice.yaml \
	  --manifest examples/models/breast-cancer/manifest.json

.PHONY: docs-assets
docs-assets: ## Re-fetch the runtime's /docs and /redoc assets (npm, pinned) and check their sha256
	@hack/docs-assets.sh

.PHONY: e2e-kind
e2e-kind: ## End-to-end on kind (needs a container engine; not run in CI here)
	@hack/e2e-kind.sh

# --- delivery: charts, images, pipeline ---------------------------------------------------------

.PHONY: delivery-tools
delivery-tools: ## Build/install pinned helm, promtool, hadolint, gitlab-ci-local into the cache
	@hack/tools-build.sh >/dev/null

.PHONY: helm
helm: ## Build (or reuse from the cache) the pinned helm; prints its directory
	@hack/tools-build.sh helm

.PHONY: lint-charts
lint-charts: ## helm lint both charts (the monitoring chart's dependencies cannot be fetched offline)
	@bin=$$(hack/tools-build.sh helm | tail -n1) && $$bin/helm lint --strict charts/aiops-operator \
	  && $$bin/helm lint charts/aiops-monitoring

.PHONY: lint-dockerfiles
lint-dockerfiles: ## hadolint both Dockerfiles
	@bin=$$(hack/tools-build.sh hadolint | tail -n1) && $$bin/hadolint Dockerfile.runtime Dockerfile.operator

.PHONY: test-delivery
test-delivery: install system-deps tools delivery-tools ## Charts, Argo CD, Prometheus, images, CI tests
	$(BIN)/pytest tests/delivery $(PYTEST_ARGS)

# --- benchmarks (print a final JSON line; compare ratios within one run) ------------------------

.PHONY: bench-runtime
bench-runtime: install system-deps ## Runtime req/s, p99 (/predict, OIP) vs floor, seed, MLServer, KServe, BentoML
	$(BIN)/python bench/runtime_bench.py

.PHONY: bench-drift
bench-drift: install ## Drift detector quality (false alarms, detection delay) and cost
	$(BIN)/python bench/drift_bench.py

.PHONY: bench-operator
bench-operator: install tools ## Operator reconcile latency and convergence for BENCH_N (200) ModelServices
	BENCH_N=$(BENCH_N) $(BIN)/python bench/operator_bench.py

.PHONY: bench-kube-client
bench-kube-client: install tools ## The operator's client (kube.py) against lightkube: CLIENT_N (1000) applies, a list, a watch
	$(BIN)/python bench/kube_client_bench.py --n $(CLIENT_N)

.PHONY: clean
clean: cluster-down ## Remove .venv and local state (the binary cache stays)
	rm -rf $(VENV) $(ALIBI_VENV) .cluster .pytest_cache .ruff_cache .mypy_cache
