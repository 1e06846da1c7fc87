# Two commands for a fresh machine:  make demo  (set up, run the main job)  and  make test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow lint paper bench beyond headroom clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU build on this machine's disk (any looser pin downloads GBs).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[rl,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python -m experiments.demo --out results/demo

paper: setup
	$(BIN)/python -m experiments.reproduce_paper --out results/paper

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m experiments.bench

clean:
	rm -rf $(VENV) results runs .pytest_cache

# Every variant x objective: rules vs oracle vs PPO over 3 seeds, config step counts (~30 min on 2 cores).
beyond: setup
	$(BIN)/python -m experiments.beyond --seeds 3 --episodes 20 --out results/beyond

# What any scheduler could gain over the best rule, per variant x scenario x objective (no training).
headroom: setup
	$(BIN)/python -m experiments.headroom --episodes 20 --out results/headroom
