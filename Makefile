# Two entry points: `make run` (main job) and `make test` (test suite). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench gpu-wheels gpu-check

$(BIN)/shortrun: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/shortrun

run: setup
	$(BIN)/shortrun run

# Two test processes (pytest-xdist), one test file each at a time: a file's server fixtures start once, and the
# end-to-end tests, which mostly wait on subprocesses, overlap. Files are handed out in collection order
# (tests/conftest.py puts the end-to-end ones first). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python -m bench

# The GPU check (docs/gpu.md). On a machine with a package index: `make gpu-wheels` downloads wheels of everything in
# requirements.lock except torch into wheels/ (for GPU_PYTHON_VERSION on GPU_PLATFORMS; pip takes each tag as
# written, so the list names every manylinux tag the node accepts). On the GPU node, with its
# own Python and PyTorch: `make gpu-check` installs wheels/ (when present) into GPU_SITE, then runs the check.
WHEELS := wheels
GPU_PYTHON ?= python3
GPU_SITE ?= /tmp/shortrun-gpu-site
GPU_PYTHON_VERSION ?= 3.11
GPU_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
GPU_CHECK_ARGS ?=

gpu-wheels:
	mkdir -p $(WHEELS)
	grep -v '^torch==' requirements.lock > $(WHEELS)/requirements.txt
	$(PYTHON) -m pip download --no-deps --only-binary=:all: $(addprefix --platform ,$(GPU_PLATFORMS)) --implementation cp \
		--python-version $(GPU_PYTHON_VERSION) -r $(WHEELS)/requirements.txt -d $(WHEELS)

gpu-check:
	if [ -f $(WHEELS)/requirements.txt ]; then $(GPU_PYTHON) -m pip install --quiet --no-index --no-deps \
		--find-links $(WHEELS) --target $(GPU_SITE) -r $(WHEELS)/requirements.txt; fi
	PYTHONPATH=$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) -m bench.gpu_check $(GPU_CHECK_ARGS)
