# Two commands on a fresh machine:  `make repro` (install + run the pipeline), `make test`.
# CPU machines get the tested pins (constraints/cpu.txt, local CPU torch build);
# on a GPU machine run `pip install -e ".[test]"` instead to get PyPI's CUDA torch.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install repro test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints/cpu.txt -e ".[test,s3]"
	touch $@

repro: install
	dvc repro

test: install
	python -m pytest

clean:
	rm -rf $(VENV) .cache
