VENV ?= .venv
PY := $(VENV)/bin/python
SYS_PY ?= python3
TORCH := torch==2.13.0

.PHONY: install quickstart test test-repeat lint clean

install: $(VENV)/.installed

# Where PYTHONDONTWRITEBYTECODE is set (as on this machine), every process, each Ray worker included, would compile
# what has no .pyc yet (this project's own modules) from source on every start.
unexport PYTHONDONTWRITEBYTECODE

# torch first, with pip: it takes the CPU build lying on this machine's disk (uv would fetch a CUDA build); the
# project keeps a range for users, which that build satisfies (uv is held to it: a dependency that wanted another
# torch fails the install instead of pulling a CUDA build). Then uv installs the rest (~190 packages) in parallel:
# 24 s with an empty cache here, where pip took 95 s of CI's 15 minutes. --system-certs: this network re-signs TLS
# with a CA that only the system's store holds (pip is pointed at it by /etc/pip.conf); uv's own roots refuse PyPI
# here. --compile-bytecode as pip does (31 s): without it every Ray worker compiles transformers and Ray anew where
# PYTHONDONTWRITEBYTECODE is set (the integration tier ran 1.5x slower), and where it is not, the first processes of
# the test streams all compile them at once (an integration module took 14 s longer on its first run).
$(VENV)/.installed: pyproject.toml
	$(SYS_PY) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH) uv==0.13.9
	$(VENV)/bin/uv pip install -q --system-certs --compile-bytecode --python $(PY) -e '.[test]' $(TORCH)
	touch $@

quickstart: install
	$(VENV)/bin/tuner run jobs/quickstart.yaml

# Every tier. A run that collects no test fails (pytest exits 5).
test: install
	bash scripts/system-deps.sh
	PY=$(PY) bash scripts/test.sh

# Flakes before CI finds them: the integration tier (or TESTS=...) N times in a row; lists every test that did not
# pass every time.
N ?= 3
TESTS ?= tests/integration
test-repeat: install
	$(PY) tests/repeat.py --runs $(N) $(TESTS)

lint: install
	$(VENV)/bin/ruff check tuner tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

clean:
	rm -rf $(VENV) sweeps .pytest_cache
