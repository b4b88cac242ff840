# Targets are the README's words. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test unit integration lint demo bench-tls host-tools

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# `make venv` installs exactly requirements/dev.txt (hash-pinned, made by `make lock` from
# pyproject.toml; docs/testing.md), then the two distributions of this repository from their
# paths, without their dependencies (the lock has them) and without build isolation (the lock
# has the build backend too), so nothing it installs floats.
$(STAMP): requirements/dev.txt pyproject.toml library/pyproject.toml
	@echo "==> creating $(VENV) from requirements/dev.txt, then hello-mtls-context and hello-mtls"
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e ./library -e .
	@touch $@

venv: $(STAMP) ## create the virtualenv with every extra and the test tools

COVERED := library/src/mtls_context images/mtls_contract images/mtls_server images/mtls_client images/mtls_ca operator/mtls_operator \
	cli/mtls_cli

# `make test` on TEST_WORKERS pytest-xdist workers (0: in this process), a module per worker at a
# time (its module fixtures start once); the integration modules, the long ones, go out first.
TEST_WORKERS ?= 2

test: $(STAMP) host-tools ## unit + integration tests (no cluster needed), with coverage per package
	$(BIN)/pytest --cov --cov-report= -n $(TEST_WORKERS) --dist loadfile tests/integration tests/unit
	@echo "==> coverage (lines, test process and every process it started; docs/testing.md)"
	@for pkg in $(COVERED); do \
		pct=$$($(BIN)/coverage report --include="$$pkg/*" --format=total) || pct="-"; \
		printf '  %-16s %5s%%\n' $$(basename $$pkg) "$$pct"; \
	done
	@printf '  %-16s %5s%%\n' total $$($(BIN)/coverage report --format=total)

unit: $(STAMP) host-tools ## unit tests only
	$(BIN)/pytest tests/unit

# The tests call promtool and prometheus (Debian's prometheus package: the alert rules' tests,
# tests/unit/test_alert_rules.py and tests/integration/test_prometheus_scrape.py). `make test`
# and `make unit` install it when it is missing, with apt-get as the cluster stage installs its
# host packages (hack/host.sh); without systemd (these VMs) its service does not start.
# The chart's template tests (tests/unit/test_chart_*.py) call helm: the pinned one, built as the
# cluster stage builds it when neither it nor one on PATH is there.
host-tools: ## install the host tools the tests call (promtool, prometheus, helm) when missing; root (apt-get)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
		bash -c 'source hack/host.sh && HOST_PACKAGES=(prometheus) && host_packages'
	@[ -x "$(LOCAL_HELM)" ] || command -v $(HELM) >/dev/null || hack/build.sh helm

lint: $(STAMP) ## ruff, mypy, the import contracts, the locks, k8s/ = the chart rendered (offline)
	$(BIN)/python requirements/locks.py check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory manifests-check

.PHONY: bench bench-ca bench-audit
bench: bench-ca bench-audit bench-tls ## every benchmark that needs no cluster (figures: benchmarks/RESULTS.md)

bench-ca: $(STAMP) ## POST /sign: hello-mtls-ca beside step-ca (built from the Go module proxy, cached), 1 and 2 signers
	@uptime
	$(BIN)/python benchmarks/bench_ca.py --write benchmarks/RESULTS.md

bench-audit: $(STAMP) ## CA audit trail: write 100,000 records (fdatasync each), then time `audit verify`
	@uptime
	$(BIN)/python benchmarks/bench_audit.py

# Images, manifests and dependency locks (operator engineer). Our machines build on the local
# base image when it exists; elsewhere on python:3.12-slim.
LOCAL_BASE := hello-mtls/python-base:bookworm
PYTHON_IMAGE ?= $(shell docker image inspect $(LOCAL_BASE) >/dev/null 2>&1 && echo $(LOCAL_BASE) || echo python:3.12-slim)
IMAGE_TAG ?= dev
HELM ?= helm

.PHONY: images manifests manifests-check lock
images: ## build hello-mtls/{ca,server,client}:$(IMAGE_TAG) with docker (PYTHON_IMAGE= to pick the base)
	@for app in ca server client; do \
		echo "==> docker build -f Dockerfile.$$app -t hello-mtls/$$app:$(IMAGE_TAG) (base $(PYTHON_IMAGE))"; \
		docker build --network host --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
			-f Dockerfile.$$app -t hello-mtls/$$app:$(IMAGE_TAG) . || exit 1; \
	done
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^hello-mtls/[a-z]*:$(IMAGE_TAG) '

manifests: $(STAMP) ## regenerate k8s/ from charts/hello-mtls (helm template; HELM= to pick the binary)
	$(BIN)/python charts/render_k8s.py --helm $(HELM)

# The pinned helm of the local cluster's cache first (CI builds it here when it is missing, so the
# check always runs there), else the helm on PATH; with neither, the check says it was skipped.
manifests-check: $(STAMP) ## check that k8s/ is what `make manifests` writes (helm template, offline)
	@if [ -x "$(LOCAL_HELM)" ]; then helm="$(LOCAL_HELM)"; \
	elif [ "$$CI" = true ]; then hack/build.sh helm && helm="$(LOCAL_HELM)"; \
	elif command -v $(HELM) >/dev/null; then helm=$$(command -v $(HELM)); \
	else \
		echo "==> k8s/ drift check SKIPPED: no helm (not on PATH, not in $(LOCAL_HELM));" \
			"'hack/build.sh helm' builds the pinned one (CI=true does that itself)"; \
		exit 0; \
	fi; \
	echo "==> k8s/ is the chart rendered ($$helm template)"; \
	$(BIN)/python charts/render_k8s.py --helm "$$helm" --check

# Every lock in requirements/ (the images', the build backend's, the dev environment's) is made
# from pyproject.toml by pip-compile, newest releases first; KEEP=1 keeps the pins that still
# satisfy (adding one dependency). `make lint` checks the locks against pyproject.toml.
lock: $(STAMP) ## re-make every hash-pinned lock in requirements/ from pyproject.toml (KEEP=1 keeps pins)
	$(BIN)/python requirements/locks.py lock $(if $(KEEP),--keep)

.PHONY: bench-operator
bench-operator: $(STAMP) ## operator on the cluster in KUBECONFIG: pod->Secret p50/p99, 10,000 Pending pods in 100 namespaces, RSS
	@uptime
	$(BIN)/python benchmarks/bench_operator.py

# The local cluster (real Kubernetes from upstream Go modules, as host processes; docs/testing.md).
CLUSTER_STATE := /var/lib/hello-mtls-cluster
LOCAL_KUBECONFIG := $(CLUSTER_STATE)/admin.kubeconfig
LOCAL_HELM := $(shell bash -c 'source hack/versions.sh && echo $$HELM_BIN/helm')
LOCAL_KUBECTL_DIR := $(shell bash -c 'source hack/versions.sh && echo $$K8S_BIN')
LOCAL_OPENAPI := $(shell bash -c 'source hack/versions.sh && echo $$K8S_OPENAPI')
E2E_KUBECONFIG := $(or $(KUBECONFIG),$(LOCAL_KUBECONFIG))
E2E_TESTS ?= tests/e2e
# Workers that run e2e modules side by side (docs/testing.md): the kubelet is the bottleneck, not
# the cores; each module runs whole on one worker, in the order tests/support/sharing.py gives.
E2E_WORKERS ?= 2

.PHONY: python-base cluster-build cluster-up cluster-down load-images e2e ci-cluster
python-base: ## build the local Python base image (debootstrap bookworm; no image can be pulled here)
	hack/python-base.sh

cluster-build: ## build/reuse the cluster binaries (k8s, etcd, CoreDNS, helm) in /var/cache/hello-mtls
	hack/build.sh

cluster-up: ## start the local single-node cluster (kubeconfig: /var/lib/hello-mtls-cluster/admin.kubeconfig)
	hack/up.sh

cluster-down: ## stop the local cluster and remove its state, mounts and iptables chains
	hack/down.sh

load-images: ## copy hello-mtls/{ca,server,client}:$(IMAGE_TAG) into the local cluster
	hack/load-images.sh hello-mtls/ca:$(IMAGE_TAG) hello-mtls/server:$(IMAGE_TAG) hello-mtls/client:$(IMAGE_TAG)

e2e: $(STAMP) ## e2e scenarios against KUBECONFIG (default: the local cluster); E2E_INSTALL=helm|kubectl, E2E_TESTS=files
	KUBECONFIG=$(E2E_KUBECONFIG) E2E_IMAGE_TAG=$(IMAGE_TAG) \
	E2E_LOCAL_VOLUMES=$${E2E_LOCAL_VOLUMES:-$(CLUSTER_STATE)/volumes} \
	E2E_K8S_OPENAPI=$${E2E_K8S_OPENAPI:-$(wildcard $(LOCAL_OPENAPI))} \
	HELM=$(if $(wildcard $(LOCAL_HELM)),$(LOCAL_HELM),$(HELM)) \
	PATH="$(if $(wildcard $(LOCAL_KUBECTL_DIR)/kubectl),$(LOCAL_KUBECTL_DIR):)$$PATH" \
	$(BIN)/pytest -v --durations=30 --e2e -n $(E2E_WORKERS) --dist loadfile --no-loadscope-reorder \
	    $(E2E_TESTS)

ci-cluster: ## CI's cluster stage: cluster-up, images, load-images, e2e (helm + kubectl passes), cluster-down
	hack/ci.sh

DEMO_SECONDS ?= 120
demo: $(STAMP) ## CA, mTLS server and two clients as local processes, rotating live (DEMO_SECONDS=120)
	$(BIN)/python demo/hello_demo.py --seconds $(DEMO_SECONDS)

bench-tls: $(STAMP) ## mTLS handshakes/s and keep-alive req/s: ours vs stock gunicorn vs a fixed context
	$(BIN)/python benchmarks/bench_tls.py --write benchmarks/RESULTS.md
