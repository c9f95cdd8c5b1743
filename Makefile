# evhub: `make demo` and `make test` bootstrap everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench system-deps clean

$(BIN)/python:
	scripts/bootstrap-python.sh $(PYTHON) $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	scripts/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/evhub run -c config/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/bench -s

clean:
	rm -rf $(VENV) build *.egg-info
