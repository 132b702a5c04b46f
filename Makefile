# The two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-long bench lint venv tools

venv:
	@bash scripts/bootstrap.sh

demo: venv
	@$(VENV)/bin/leadrouter demo

tools: venv
	@bash scripts/tools.sh

test: venv tools
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	@$(VENV)/bin/pytest -q

test-long: venv tools
	@$(VENV)/bin/pytest -q -m long

bench: venv tools
	@$(PY) -m bench.run

lint: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
