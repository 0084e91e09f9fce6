# Everything starts from nothing: each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

## Run the main job offline on the embedded default.
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m kerastransfer.demo $(ARGS)

# Two pytest-xdist workers, one test module each at a time (a module's tests share
# its fixtures and its isolated child process; see tests/conftest.py). Two, not
# `auto`: the suite's memory budget (6 GiB) holds for two. WORKERS=0 runs in one
# process.
WORKERS ?= 2
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

## Run the whole test suite (slow tests included). Ends with the peak RSS line.
test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest $(XDIST) --durations=30 $(PYTEST_ARGS)

## Everything but the tests marked slow: for development.
test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff && $(VENV)/bin/ruff check kerastransfer tests

clean:
	rm -rf $(VENV) build *.egg-info
