# Set-up and entry points. `make demo` and `make test` create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo venv lint clean

venv: $(STAMP)

# torch is pinned and installed first: the CPU build of 2.13.0 lies on disk here, while an unpinned
# torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .[dev,backends]
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The main job on an embedded default: the shipped photo model on the held-out sample photos.
demo: $(STAMP)
	$(BIN)/exda demo --out exda-demo

lint: $(STAMP)
	$(BIN)/ruff check exda tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
