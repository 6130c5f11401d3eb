# The two commands of the README's quick start: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= data

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## run: create the data folder on first start (CA, certificates, config) and run the MTA on 127.0.0.1:2525
##      (make run LISTEN=127.0.0.1:2600: another address for a new data folder)
run: $(VENV)/.runtime
	$(BIN)/mailward quickstart $(DATA) $(if $(LISTEN),--listen $(LISTEN))

## test: install what the tests need (PyPI and Debian packages) and run the whole suite
test: $(VENV)/.test
	bash scripts/install-test-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## bench: the benchmark beside Postfix and aiosmtpd (see README, Performance); spools on this machine's own
##        file system; BENCH_ARGS="--fs both": also a table on a private loop-mounted ext4; "--short": a quick check
bench: $(VENV)/.test
	bash bench/setup.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
