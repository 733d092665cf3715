# HopChain data platform. Two commands do everything on a fresh machine:
#   make demo   set up if needed, start the local stack, run a nightly build through the real Airflow scheduler
#   make test   set up if needed, run the whole test suite
.PHONY: setup up down status demo test test-fast lint bench clean-stack help

PY := .venv/bin/python
HOPCHAIN := .venv/bin/hopchain
DEMO := .venv/bin/hopchain-demo
# The local stack runs the demo profile unless told otherwise (PROFILE=base make up).
PROFILE ?= demo

help:
	@echo "make demo | make test | make lint | make setup | make up | make down | make status | make bench"

setup:
	@./scripts/setup.sh

up: setup
	@$(HOPCHAIN) --profile $(PROFILE) stack up

down:
	@if [ -x $(HOPCHAIN) ]; then $(HOPCHAIN) stack down; fi

status:
	@$(HOPCHAIN) stack status

demo: setup
	@$(DEMO) --profile $(PROFILE) run

test: setup
	@OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: setup
	@$(PY) -m ruff check .
	@$(PY) -m mypy

test-fast: setup
	@OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "unit"

bench: setup
	@$(PY) bench/run_all.py

clean-stack: down
	rm -rf .stack
