# Two commands for a fresh machine:  make demo  (set up, run the main job)  and  make test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow lint paper bench beyond headroom reach10 serve transfer transfer-long clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU build on this machine's disk (any looser pin downloads GBs).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[rl,rllib,test]"
	$(BIN)/python -m papi_env.precompile
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

# Every variant x objective: rules vs oracle vs PPO over 3 seeds, config step counts (11 min on 2 cores at v0.5).
beyond: setup
	$(BIN)/python -m experiments.beyond --seeds 3 --episodes 20 --out results/beyond

# What any scheduler could gain over the best rule, per variant x scenario x objective (no training).
headroom: setup
	$(BIN)/python -m experiments.headroom --episodes 20 --out results/headroom

# The speculation length on GPT-3 175B / EDP (10% over the best rule is the target): DQN with the expected-token reward, 6 seeds x 300k steps,
# 100 fresh held-out episodes (8 min on 2 cores; docs/RESULTS.md).
reach10: setup
	$(BIN)/python -m experiments.beyond --algo dqn --variants PapiSpecSchedule --objectives edp \
		--env-kwargs '{"model":"gpt3-175b","reward_tokens":"expected"}' --total-timesteps 300000 \
		--seeds 6 --episodes 100 --eval-seed 2 --out results/reach10_dqn_expected

# Online serving: PPO on PapiServe-v0 (3 seeds, the config's 500k steps, as Ray tasks), then latency
# versus request rate for the baselines, PAPI's rule, the best fixed TLP and the agents (~5 min).
serve: setup
	$(BIN)/python -m experiments.serve --train-seeds 3 --out results/serve
	$(BIN)/python -m experiments.serve_goodput --algos ppo,maskable_ppo --train-seeds 3 --total-timesteps 1000000 --out results/serve_goodput

# Transfer: PPO trained on 32 drawn systems and models (kernel and spec variants, latency and EDP, 3 seeds,
# the configs' steps), evaluated zero-shot on the held-out systems (docs/RESULTS.md).
transfer: setup
	$(BIN)/python -m experiments.transfer --seeds 3 --few-shot 20000 --out results/transfer

# Transfer with 300k steps on 128 drawn systems, each variant (the headline in docs/RESULTS.md; ~1 h).
transfer-long: setup
	$(BIN)/python -m experiments.transfer --variants kernel --seeds 3 --train-size 128 --total-timesteps 300000 --out results/transfer_kernel_long
	$(BIN)/python -m experiments.transfer --variants spec --seeds 3 --train-size 128 --total-timesteps 300000 --out results/transfer_spec_long

lint: setup
	$(BIN)/ruff check .
