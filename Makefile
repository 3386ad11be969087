# motcua: the targets the README names. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck check bench soak clean wheelhouse

$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Start the whole system on the embedded defaults (SQLite + folders) on 127.0.0.1.
demo: $(STAMP)
	$(BIN)/python -m central.demo

## Run every test: lint, strict typing of protocol/, then pytest.
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check protocol node central tests bench
	$(BIN)/ruff format --check protocol

typecheck: $(STAMP)
	$(BIN)/mypy --strict protocol

check: lint typecheck

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## Offline install: every pinned runtime wheel plus motcua itself, for a branch PC with no internet.
WHEELHOUSE ?= dist/wheelhouse
wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --require-hashes --no-deps -r requirements/runtime.lock -w $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --no-deps . -w $(WHEELHOUSE)
	cp requirements/runtime.lock $(WHEELHOUSE)/requirements.lock
	cd $(WHEELHOUSE) && sha256sum *.whl > SHA256SUMS
	@echo "wheelhouse ready in $(WHEELHOUSE): copy it to the branch PC and run"
	@echo "  python3 -m venv /opt/motcua/venv"
	@echo "  /opt/motcua/venv/bin/pip install --no-index --find-links WHEELHOUSE --require-hashes -r WHEELHOUSE/requirements.lock"
	@echo "  /opt/motcua/venv/bin/pip install --no-index --no-deps WHEELHOUSE/motcua-*.whl"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
