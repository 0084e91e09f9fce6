# Everything starts from nothing: each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs the package and onnxruntime only; the tests also need the dev
# extras (text, medical, audio, detection, the service), which the demo's
# first run would spend most of its install time on.
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-fast lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# pip byte-compiles what it installs on one core (TensorFlow's thousands of
# modules); compileall does it on every core: 0.88x the install's time
# (docs/design.md fact 32).
INSTALL := $(PY) -m pip install --quiet --no-compile
COMPILE := $(PY) -m compileall -q -j 0 $(VENV)/lib

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(INSTALL) -e ".[cpu,dev]"
	$(COMPILE)
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): setup.cfg pyproject.toml | $(PY)
	$(INSTALL) -e ".[cpu]"
	$(COMPILE)
	touch $(DEMO_STAMP)

## Run the main job offline on the embedded default.
demo: $(DEMO_STAMP)
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
