# The README's two set-up commands are `make demo` and `make test`; .ci/run calls `make test` unchanged.
# Each target bootstraps .venv from nothing: torch is pinned and installed first (a local CPU build).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit postgres-tests venv extension superset superset-venv clean

$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ray]' --config-settings editable_mode=strict
	touch $@

# Re-link the editable install so that newly added modules are importable.
venv: $(VENV)/.deps
	@$(BIN)/pip install -q --no-deps -e . --config-settings editable_mode=strict 2>/dev/null

demo: venv
	$(BIN)/sqlml demo

# lint-imports reads the link tree too (see typecheck), and keeps the layers pyproject.toml names.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd build/__editable__.sqlml-*/ && $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml

# mypy reads the installed link tree, where bridge/ and udfs/ appear as sqlml.bridge and sqlml.udfs.
# The PL/Python helper's modules (extension/helper/, built into one file) are the package `helper`
# there, their imports of the shared rules (sqlml.naming, sqlml.sql.*) read from that same tree.
typecheck: venv
	cd build/__editable__.sqlml-*/ && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p sqlml
	cd build/__editable__.sqlml-*/ && MYPYPATH=$(CURDIR)/extension $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p helper

extension:
	$(MAKE) -C extension install

# Proof that the suite needs no network: everything but the PostgreSQL tests (whose server lives
# in the host's network namespace) runs in a fresh network namespace with only loopback.
unit: venv superset-venv
	scripts/offline $(BIN)/pytest -m "not postgres"

postgres-tests: venv extension
	$(BIN)/pytest -m postgres

test: lint typecheck unit postgres-tests

# Superset lives in its own virtual environment (its pins conflict with ours); the offline part
# of the suite needs it built beforehand, while the package registry is reachable.
superset-venv: venv
	$(BIN)/sqlml superset install

superset: venv extension
	$(BIN)/sqlml superset up

clean:
	rm -rf $(VENV) .venv-superset build *.egg-info .pytest_cache .mypy_cache .ruff_cache
