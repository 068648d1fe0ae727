# Set-up and entry points. `make test` and `make demo` create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test venv lint clean

venv: $(STAMP)

# torch is pinned and installed first: the CPU build of 2.13.0 lies on disk here, while an unpinned
# torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .[dev]
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check exda tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
