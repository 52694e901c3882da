# One command each: `make demo` (set up .venv, train CAM/early/late on the synthetic set,
# evaluate) and `make test` (set up .venv, run pytest). Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The extension's flavour follows the machine: with an NVIDIA GPU it must include the CUDA ops, so
# a CPU-only build made elsewhere (a shared checkout) is rebuilt, and the other way round.
FLAVOUR := $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
STAMP := $(VENV)/.installed-$(FLAVOUR)

.PHONY: setup demo test cuda-check clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt setup.py $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-test.txt
	rm -f $(VENV)/.installed-* wsol_fast/_C*.so
	$(PY) -m pip install -q --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) launch/demo.py --out runs/demo

test: $(STAMP)
	$(PY) -m pytest tests -q

# Compile the CUDA sources of the extension with nvcc (no GPU needed), so they cannot rot: each
# .cu file and the bindings with WITH_CUDA, with setup.py's flags, for one architecture and no PTX
# (each more costs CI minutes and checks nothing more: the sources have no architecture-specific
# code); real builds embed 8.0, 9.0 and PTX (setup.py).
cuda-check: $(STAMP)
	$(PY) .ci/compile_cuda.py

clean:
	rm -rf build *.egg-info wsol_fast/_C*.so
