# webhook-gateway: `make run` starts the gateway on config.yaml; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ENV_FILE := .env.dev

# Environments come from uv.lock through uv, at this version. A uv of the same version on PATH
# is used as it is; otherwise make installs this one from PyPI into .tools (untracked).
UV_VERSION := 0.13.9
TOOLS := .tools
PIP_QUIET := --quiet --disable-pip-version-check
ifeq ($(word 2,$(shell uv --version 2>/dev/null)),$(UV_VERSION))
UV := uv
GET_UV :=
else
UV := $(TOOLS)/bin/uv
GET_UV := $(UV)
endif
# The interpreter the environment is made with: $(PYTHON), never one uv would download.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

# One stamp per set installed, each redone when pyproject.toml or uv.lock changes. `make run`
# installs the runtime alone, `make marketplace` adds its group, and neither removes what another
# target installed (--inexact); `make test` makes the environment exactly the locked dev set.
RUN_STAMP := $(VENV)/.synced-run
MARKETPLACE_STAMP := $(VENV)/.synced-marketplace
STAMP := $(VENV)/.synced-dev
LOCKED := pyproject.toml uv.lock | $(GET_UV)

.PHONY: run marketplace test soak lint bench clean setup system-deps lock upgrade

# With $(PYTHON)'s own pip into .tools (seconds faster than a venv first), else through a venv.
$(TOOLS)/bin/uv:
	@rm -rf $(TOOLS)
	$(PYTHON) -m pip install $(PIP_QUIET) --root-user-action=ignore --target $(TOOLS) uv==$(UV_VERSION) \
		|| { rm -rf $(TOOLS) && $(PYTHON) -m venv $(TOOLS) \
		     && $(TOOLS)/bin/pip install $(PIP_QUIET) uv==$(UV_VERSION); }

$(RUN_STAMP): $(LOCKED)
	$(UV) sync --quiet --frozen --no-dev --inexact
	touch $@

$(MARKETPLACE_STAMP): $(LOCKED)
	$(UV) sync --quiet --frozen --no-dev --group marketplace --inexact
	touch $@

$(STAMP): $(LOCKED)
	$(UV) sync --quiet --frozen
	touch $@

# uv.lock again from pyproject.toml, keeping every locked version that still fits it.
lock: | $(GET_UV)
	$(UV) lock

# The newest versions pyproject.toml allows, written to uv.lock: for bumping the lock on
# purpose (then run make test and commit uv.lock). Never part of make test.
upgrade: | $(GET_UV)
	$(UV) lock --upgrade

setup: $(STAMP)

$(ENV_FILE): | $(RUN_STAMP)
	$(BIN)/python scripts/dev_secrets.py $(ENV_FILE)

run: $(RUN_STAMP) $(ENV_FILE)
	@mkdir -p data
	@. ./$(ENV_FILE) && $(BIN)/webhook-gateway check-config --config config.yaml >/dev/null
	@echo ""
	@echo "webhook-gateway: ingress http://127.0.0.1:8080, admin http://127.0.0.1:9090 (healthz, readyz, metrics)"
	@echo "Dashboard: http://127.0.0.1:9090/dashboard (sign in with GATEWAY_ADMIN_TOKEN from $(ENV_FILE))"
	@echo "Send a signed test event from another terminal:"
	@echo "    . ./$(ENV_FILE) && $(BIN)/webhook-gateway send payments"
	@echo "Print the signature headers for your own body, as curl arguments:"
	@echo "    . ./$(ENV_FILE) && $(BIN)/webhook-gateway sign payments --curl --file body.json"
	@echo "Events are queued in data/gateway.db and delivered to the marketplace at"
	@echo "http://localhost:8000/api/webhooks/payments (retried until it answers 2xx);"
	@echo "'make marketplace' runs a stand-in that verifies and prints each delivery."
	@echo ""
	@. ./$(ENV_FILE) && exec $(BIN)/webhook-gateway run --config config.yaml

# A stand-in marketplace on 127.0.0.1:8000 (MARKETPLACE_PORT) serving /api/webhooks/payments and
# /api/webhooks/rafiki: verifies the gateway's signature and prints each delivery.
marketplace: $(MARKETPLACE_STAMP) $(ENV_FILE)
	@. ./$(ENV_FILE) && exec $(BIN)/python scripts/dev_marketplace.py

# Programs the tests start for real (each on its own free port): redis-server, Node.js for the
# senders in tests/node, promtool (Debian's prometheus package) for the alert rules in
# deploy/prometheus, and Chromium for the dashboard's browser tests. Installed with apt-get
# when missing.
SYSTEM_DEPS := redis-server=redis-server redis-cli=redis-tools node=nodejs npm=npm promtool=prometheus chromium=chromium
NODE_MODULES := tests/node/node_modules/.package-lock.json

system-deps:
	@scripts/system-deps $(SYSTEM_DEPS)

$(NODE_MODULES): tests/node/package.json tests/node/package-lock.json | system-deps
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

lint: $(STAMP)
	$(BIN)/ruff check gateway plugins tests scripts bench harness
	$(BIN)/ruff format --check gateway plugins tests scripts bench harness
	$(BIN)/mypy gateway plugins bench harness

test: $(STAMP) system-deps $(NODE_MODULES) lint
	$(BIN)/pytest -q

# The long fault scenarios (a minute of load each: SIGKILLs, a destination down for a minute,
# Redis restarts, ...) and ten times the property-test examples; `make test` runs the short
# ones. The figures (RELIABILITY.md) are appended to $(SOAK_RESULTS), one JSON line each.
SOAK_RESULTS := bench/results/faults.jsonl

soak: $(STAMP) system-deps
	@mkdir -p $(dir $(SOAK_RESULTS))
	@rm -f $(SOAK_RESULTS)
	WEBHOOK_GATEWAY_SOAK=1 WEBHOOK_GATEWAY_FAULTS_RESULTS=$(SOAK_RESULTS) \
		$(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_faults.py tests/fuzz
	@echo "figures: $(SOAK_RESULTS)"

# The benchmark (docs/benchmark.md, BENCHMARKS.md) also needs wrk and nginx (Debian packages),
# installed when missing. BENCH_ARGS passes options on: make bench BENCH_ARGS="--long".
bench: $(STAMP) system-deps
	@scripts/system-deps wrk=wrk nginx=nginx
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info .mypy_cache .ruff_cache .pytest_cache tests/node/node_modules
