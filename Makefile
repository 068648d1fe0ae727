# Set-up and entry points. `make demo` and `make test` create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-browser docs-figures demo venv lint clean

venv: $(STAMP)

# torch is pinned and installed first: the CPU build of 2.13.0 lies on disk here, while an unpinned
# torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .[dev,backends,serve]
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

# exda serve in a real headless Chromium (Debian's chromium + chromium-driver, selenium from PyPI); not in `make test`.
test-browser: $(STAMP)
	command -v chromedriver >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver)
	$(BIN)/python -m pip install -q -e .[browser]
	EXDA_TEST_BROWSER=1 $(BIN)/python -m pytest tests/inference/test_serve_browser.py

# The pictures and results files the docs show (tests/docs/test_docs.py checks the figures quoted from them).
docs-figures: $(STAMP)
	$(BIN)/exda degrade --grid docs/degradations.png
	$(BIN)/exda models --json benchmarks/results/models.json
	$(BIN)/exda eval --checkpoint exda/weights/exda_photo.safetensors --data samples --degradation noise25 rain \
		haze snow motion_blur low_light underwater jpeg random_mix --out benchmarks/results/default_model_eval
	EXDA_SERVE_SCREENSHOT=docs/serve.png $(MAKE) test-browser

# The main job on an embedded default: the shipped photo model on the held-out sample photos.
demo: $(STAMP)
	$(BIN)/exda demo --out exda-demo

lint: $(STAMP)
	$(BIN)/ruff check exda tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
