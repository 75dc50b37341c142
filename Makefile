# Two entry points, both self-installing into ./.venv on first use:
#   make run   - the whole embedded default workflow (synthetic data, CPU)
#   make test  - the test suite
#   make lint  - snakemake --lint and the snakefmt check of the rules
#   make backbones - pretrain the embedded default's backbones here and ship them (backbones/)
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: run test lint install clean-results backbones

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

backbones: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores $(CORES) pretrained_backbones --config 'pretraining={weights: null}'
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m mld ship-backbones --out backbones

lint: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --lint
	$(PY) -m snakefmt --check Snakefile workflow/rules
