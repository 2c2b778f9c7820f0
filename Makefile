# `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= sim,train,server,robot,ros,dev
APT_PACKAGES := libegl1 libgl1-mesa-dri libosmesa6 libusb-1.0-0 libhidapi-hidraw0 libhidapi-libusb0
# Only for the test of `wovr report` (renders the page headless); without it that test skips and says why.
APT_TEST_PACKAGES := chromium
WORKSPACE ?= $(HOME)/.cache/wovr/demo
PYTEST_ARGS ?=
# e.g. DEMO_ARGS=--fresh (start over), DEMO_ARGS="--preset smoke" (toy sizes, minutes)
DEMO_ARGS ?=

export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: all install system-deps test-deps demo test test-fast lint bench clean

all: install

# System libraries for headless rendering, RealSense and the SpaceMouse. Installs only what is missing.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages: $$missing (run: sudo apt-get install $$missing)"; exit 1; fi; \
	fi

test-deps:
	@missing=$$(for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing \
	    || echo "could not install $$missing: the tests that need it will skip"; \
	  else echo "optional test packages missing: $$missing (sudo apt-get install $$missing); those tests skip"; fi; \
	fi

$(VENV)/.installed: pyproject.toml requirements/constraints.txt requirements/sim-nodeps.txt | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: a plain `torch` requirement resolved later would pull a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q --no-deps -r requirements/sim-nodeps.txt
	# Pin whatever torch is now installed (the CPU file here, a user's own CUDA build elsewhere).
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PIP) install -q -c requirements/constraints.txt -c $(VENV)/torch-constraint.txt -e ".[$(EXTRAS)]"
	$(PY) -c "import torch, wovr_core; print('wovr installed; torch', torch.__version__)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/wovr demo --workspace $(WORKSPACE) $(DEMO_ARGS)

test: install test-deps
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache
