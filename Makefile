# Two entry points, both self-installing into ./.venv on first use:
#   make run   - the whole embedded default workflow (synthetic data, CPU)
#   make test  - the test suite
#   make lint  - snakemake --lint and the snakefmt check of the rules
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: run test lint install clean-results

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores $(CORES)

test: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

lint: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --lint
	$(PY) -m snakefmt --check Snakefile workflow/rules
