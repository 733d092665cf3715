# HopChain data platform. Two commands do everything on a fresh machine:
#   make demo   set up if needed, start the local stack, run a nightly build through the real Airflow scheduler
#   make test   set up if needed, run the whole test suite
.PHONY: setup up down status demo test test-unit test-fast lint bench clean-stack help

PY := .venv/bin/python
HOPCHAIN := .venv/bin/hopchain
DEMO := .venv/bin/hopchain-demo
# The local stack runs the demo profile unless told otherwise (PROFILE=base make up).
PROFILE ?= demo
# Test processes (pytest-xdist). Tests sharing an expensive session server (the whole local stack, Label
# Studio) are one group each and run on one worker, so each server starts once (tests/conftest.py).
TEST_WORKERS ?= 3

help:
	@echo "make demo | make test | make test-unit | make lint | make setup | make up | make down | make status | make bench"

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
	@OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	@$(PY) -m ruff check .
	@$(PY) -m mypy

test-unit: setup
	@OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "unit" -n 2

test-fast: test-unit

bench: setup
	@$(PY) bench/run_all.py

clean-stack: down
	rm -rf .stack
