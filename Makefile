# ntk-limits: the two commands a user needs are `make reproduce-all` and `make test`.
# Both create the local environment (.venv) on first use from constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= results
export JAX_PLATFORMS ?= cpu
# XLA already uses every core; a second pool of BLAS threads oversubscribes them
# (measured: CPU Cholesky 100-500x slower on a loaded 2-core machine).
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help env env-over install-into over-jax-check wheels wheels-check test test-slow lint notebook-check reproduce-all report bench bench-deps bench-gpu h200-estimate clean

help:
	@echo "make reproduce-all  run every study (embedded profile, packaged real data) and write results/REPORT.md"
	@echo "make test           fast test suite (about 5 min on 2 cores); make test-slow for statistical checks"
	@echo "make bench          speed/memory benchmarks -> results/bench.json (installs torch for its baseline)"
	@echo "make h200-estimate  paper-profile time on one H200, estimated on this CPU -> results/h200-estimate.json"
	@echo "make lint           ruff"

# neural-tangents is installed with --no-deps: its metadata asks for tensorflow and tf2jax,
# used only by its TF-model NTK, which ntk-limits does not need (see kernels/_nt.py).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	$(PY) -m pip install -q --no-deps -c constraints.txt neural-tangents==0.6.5
	@touch $@

env: $(STAMP)

# Over an existing JAX (e.g. a CUDA build preinstalled in the system interpreter): .venv
# sees the interpreter's own packages and gets only what they lack (install/missing.py);
# an installed jax/jaxlib in the supported range is kept, one outside it is refused.
env-over:
	@test ! -e $(VENV) || { echo "env-over: $(VENV) exists; allowed: remove it first (make clean)" >&2; exit 2; }
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(MAKE) install-into PYTHON=$(PY) EDITABLE=-e EXTRAS=[test]
	@touch $(STAMP)

# Install into an existing environment (PYTHON=its interpreter, e.g. a notebook's),
# adding only the packages it lacks, at the versions CI tests.
EDITABLE ?=
EXTRAS ?=
install-into:
	mkdir -p build
	$(PYTHON) install/missing.py constraints.txt --out build/missing-constraints.txt
	$(PYTHON) -m pip install -q -c build/missing-constraints.txt $(EDITABLE) ".$(EXTRAS)"
	$(PYTHON) -m pip install -q --no-deps neural-tangents==0.6.5

# The existing-JAX install, checked: a fresh environment holding jax 0.10.1 (in range, not
# the pinned version) gets the project by install-into; its jax must stay and the README's
# notebook snippets must run there (CI runs this).
OJ := build/over-jax-check
over-jax-check:
	rm -rf $(OJ) && mkdir -p $(OJ)
	$(PYTHON) -m venv $(OJ)/venv
	$(OJ)/venv/bin/pip install -q --upgrade pip
	$(OJ)/venv/bin/pip install -q jax==0.10.1 jaxlib==0.10.1
	$(MAKE) install-into PYTHON=$(OJ)/venv/bin/python
	$(OJ)/venv/bin/python -c "import jax, jaxlib; v = (jax.__version__, jaxlib.__version__); assert v == ('0.10.1', '0.10.1'), v; print('jax kept:', v)"
	cd $(OJ) && JAX_PLATFORMS=cpu venv/bin/python $(CURDIR)/.ci/readme_snippets.py $(CURDIR)/README.md

# Three pytest workers on two cores: a third can run while the others wait on the
# subprocesses of the command-line and memory tests. Measured here, the gain is small and
# within the noise: 4:57-5:41 over five runs (median 5:16) against 5:18-5:23 over three
# with two. Each test file runs on one worker, so its module fixtures (a study's smoke run,
# compiled programs) are built once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The notebook install exactly as the README documents it: the built wheel into a fresh
# environment, then neural-tangents without its dependencies; the README's notebook
# snippets run there, from outside the checkout (CI runs this after the tests).
NB := build/notebook-check
notebook-check:
	rm -rf $(NB) && mkdir -p $(NB)
	$(PYTHON) -m venv $(NB)/venv
	$(NB)/venv/bin/pip install -q --upgrade pip
	$(NB)/venv/bin/pip wheel -q --no-deps -w $(NB)/dist .
	$(NB)/venv/bin/pip install -q $(NB)/dist/ntk_limits-*.whl
	$(NB)/venv/bin/pip install -q --no-deps neural-tangents==0.6.5
	cd $(NB) && JAX_PLATFORMS=cpu venv/bin/python $(CURDIR)/.ci/readme_snippets.py $(CURDIR)/README.md

# An offline bundle: the wheels of every runtime package the BASE environment lacks
# (a pip-freeze-style file; default: the H200 host image), for PY_VERSION on manylinux
# x86_64, plus ntk-limits' own wheel, in WHEELS. On the offline host:
#   pip install --no-index --find-links .whl ntk-limits
WHEELS ?= .whl
BASE ?= install/h200-base.txt
PY_VERSION ?= 3.12
wheels:
	rm -rf $(WHEELS) && mkdir -p build
	$(PYTHON) install/missing.py constraints.txt --base $(BASE) --runtime --out build/wheels.txt
	$(PYTHON) install/wheels.py build/wheels.txt --dest $(WHEELS) --python-version $(PY_VERSION)

# The bundle, checked offline: an environment holding jax, flax, optax and chex is the
# base; the bundle made for it installs with --no-index and the README snippets run.
WC := build/wheels-check
wheels-check:
	rm -rf $(WC) && mkdir -p $(WC)
	$(PYTHON) -m venv $(WC)/venv
	$(WC)/venv/bin/pip install -q --upgrade pip
	$(WC)/venv/bin/pip install -q -c constraints.txt jax jaxlib flax optax chex
	$(WC)/venv/bin/pip freeze > $(WC)/base.txt
	$(MAKE) wheels BASE=$(WC)/base.txt WHEELS=$(WC)/whl PY_VERSION=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	$(WC)/venv/bin/pip install -q --no-index --find-links $(WC)/whl ntk-limits
	$(WC)/venv/bin/pip install -q --no-index --no-deps --find-links $(WC)/whl neural-tangents
	cd $(WC) && JAX_PLATFORMS=cpu venv/bin/python $(CURDIR)/.ci/readme_snippets.py $(CURDIR)/README.md

reproduce-all: $(STAMP)
	$(VENV)/bin/ntk-limits run all --profile embedded --workdir $(WORKDIR)
	$(VENV)/bin/ntk-limits report --workdir $(WORKDIR)

report: $(STAMP)
	$(VENV)/bin/ntk-limits report --workdir $(WORKDIR)

# PyTorch (CPU build) only for the torch.func baseline of `make bench`; not a dependency of
# the library. Without it the benchmark runs and reports the torch row as skipped.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q torch==2.13.0 || echo "bench-deps: torch not installed; the torch.func row will be skipped"
	@touch $@

bench-deps: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run --out $(WORKDIR)/bench.json

# On a GPU host, .venv must hold a CUDA jax: build it with `make env-over` over the host's
# own packages (the pinned .venv of `make env` is CPU-only).
bench-gpu: $(STAMP)
	JAX_PLATFORMS= $(PY) -m benchmarks.run --gpu --out $(WORKDIR)/bench-gpu.json

# The paper profile's time on one H200, estimated without a GPU: every paper-profile program
# lowered on abstract shapes and its flops and bytes counted, a stated time model, and three
# paper runs timed here as an anchor (benchmarks/h200_estimate.py; ~5.5 min on 2 cores).
h200-estimate: $(STAMP)
	$(PY) -m benchmarks.h200_estimate --out $(WORKDIR)/h200-estimate.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
