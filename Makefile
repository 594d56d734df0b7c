# Two commands on a fresh machine:  `make repro` (install + run the pipeline), `make test`.
# CPU machines get the tested pins (constraints/cpu.txt, local CPU torch build);
# on a GPU machine run `pip install -e ".[test]"` instead to get PyPI's CUDA torch.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# moto (the loopback S3 server for tests/test_remote_s3.py) lives in its own venv:
# it would upgrade botocore past aiobotocore's pin in the main one.
VENV_S3 ?= .venv-s3
MOTO    ?= moto[server]==5.2.5
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-s3 repro test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints/cpu.txt -e ".[test,s3]"
	touch $@

install-s3: $(VENV_S3)/.installed

$(VENV_S3)/.installed:
	$(PYTHON) -m venv $(VENV_S3)
	$(VENV_S3)/bin/pip install --quiet "$(MOTO)"
	touch $@

repro: install
	dvc repro

test: install install-s3
	ruff check .
	ruff format --check .
	python -m pytest

bench: install
	python bench/run_all.py $(if $(BEIR_DIR),--beir-dir $(BEIR_DIR))

clean:
	rm -rf $(VENV) $(VENV_S3) .cache
