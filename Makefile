VENV ?= .venv
PY := $(VENV)/bin/python
SYS_PY ?= python3

.PHONY: install quickstart test lint clean

install: $(VENV)/.installed

# torch first: pip takes the CPU build lying on this machine's disk; the project keeps a range for users.
$(VENV)/.installed: pyproject.toml
	$(SYS_PY) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

quickstart: install
	$(VENV)/bin/tuner run jobs/quickstart.yaml

test: install
	$(PY) -m pytest -q -m "slow or not slow" --durations=12; rc=$$?; [ $$rc -eq 5 ] && exit 0 || exit $$rc

lint: install
	$(VENV)/bin/ruff check tuner tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) sweeps .pytest_cache
