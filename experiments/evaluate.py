"""Evaluate schedulers on the same held-out episodes, paired.

    python -m experiments.evaluate --env papi_env/PapiSchedule-v0 \\
        --policies threshold,always-gpu,always-pim,oracle,random --episodes 50 --seed 0 --out results/eval

Every policy runs the same episodes: episode i is ``env.reset(seed=EVAL_SEED_BASE + 1000 * seed + i)``;
training uses seeds below EVAL_SEED_BASE, so evaluation batches are never trained on.
Writes ``eval.json`` and ``eval.md``: per policy mean +- std of episode time, energy, tokens/s,
J/token, the share of GPU iterations, and its ratio to the threshold policy, paired per episode
(mean over episodes of policy tokens/s / threshold tokens/s; for energy, threshold J / policy J).
Learned agents: ``ppo:runs/x/best_model.zip`` (see experiments.train).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import papi_env  # noqa: F401  (registers the environments)
from agents.policies import Oracle, make_policy
from experiments.io import markdown_table, write_json, write_text

EVAL_SEED_BASE = 1_000_000
REFERENCE = "threshold"


def eval_seeds(episodes: int, seed: int) -> list[int]:
    return [EVAL_SEED_BASE + 1000 * seed + i for i in range(episodes)]


def run_episode(env: gym.Env, policy: Any, seed: int) -> dict[str, float]:
    """One episode; returns its totals."""
    if isinstance(policy, Oracle):
        policy.bind(env)
    obs, _ = env.reset(seed=seed)
    gpu_steps = steps = 0
    state, episode_start = None, True
    while True:
        action, state = policy.predict(obs, state=state, episode_start=np.array([episode_start]), deterministic=True)
        obs, _, terminated, truncated, info = env.step(int(action))
        episode_start = False
        steps += 1
        gpu_steps += info["placement"] == "gpu"
        if terminated or truncated:
            return {
                "time_s": info["episode_time"],
                "energy_j": info["episode_energy"],
                "tokens": info["episode_tokens"],
                "tokens_per_s": info["tokens_per_s"],
                "joules_per_token": info["joules_per_token"],
                "gpu_share": gpu_steps / steps,
                "steps": steps,
            }


def evaluate(env_id: str, policy_specs: list[str], episodes: int, seed: int,
             env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every policy on the same episodes; return the eval.json structure."""
    env_kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **env_kwargs)
    base = env.unwrapped
    model, system = base.cost_model.model, base.cost_model.system
    seeds = eval_seeds(episodes, seed)
    specs = list(dict.fromkeys(policy_specs))
    if REFERENCE not in [s.partition(":")[0] for s in specs]:
        specs.insert(0, REFERENCE)
    per_policy: dict[str, list[dict[str, float]]] = {}
    for spec in specs:
        policy = make_policy(spec, env=env, model=model, system=system, seed=seed)
        per_policy[spec] = [run_episode(env, policy, s) for s in seeds]
    env.close()
    ref_name = next(s for s in specs if s.partition(":")[0] == REFERENCE)
    ref = per_policy[ref_name]
    result: dict[str, Any] = {"env": env_id, "env_kwargs": env_kwargs, "episodes": episodes, "seed": seed,
                              "eval_seeds": [seeds[0], seeds[-1]], "reference": ref_name, "policies": {}}
    for spec, eps in per_policy.items():
        row: dict[str, float] = {}
        for key in ("time_s", "energy_j", "tokens_per_s", "joules_per_token", "gpu_share"):
            vals = np.array([e[key] for e in eps])
            row[key] = float(vals.mean())
            row[key + "_std"] = float(vals.std())
        ratios = np.array([e["tokens_per_s"] / r["tokens_per_s"] for e, r in zip(eps, ref, strict=True)])
        eratios = np.array([r["joules_per_token"] / e["joules_per_token"] for e, r in zip(eps, ref, strict=True)])
        row["ratio_vs_threshold"] = float(ratios.mean())
        row["ratio_vs_threshold_std"] = float(ratios.std())
        row["ratio_vs_threshold_min"] = float(ratios.min())
        row["energy_eff_vs_threshold"] = float(eratios.mean())
        result["policies"][spec] = row
    return result


def to_markdown(result: dict[str, Any]) -> str:
    rows = []
    for name, r in result["policies"].items():
        rows.append([
            name,
            f"{r['tokens_per_s']:.1f} ± {r['tokens_per_s_std']:.1f}",
            f"{r['time_s']:.3f} ± {r['time_s_std']:.3f}",
            f"{r['energy_j']:.1f} ± {r['energy_j_std']:.1f}",
            f"{r['joules_per_token']:.3f}",
            f"{r['gpu_share']:.2f}",
            f"{r['ratio_vs_threshold']:.4f} ± {r['ratio_vs_threshold_std']:.4f}",
            f"{r['energy_eff_vs_threshold']:.3f}",
        ])
    header = ["policy", "tokens/s", "episode time (s)", "episode energy (J)", "J/token", "GPU share",
              "tokens/s ratio vs threshold (paired)", "energy eff. vs threshold"]
    return (f"# Evaluation on {result['env']}\n\n{result['episodes']} held-out episodes "
            f"(seeds {result['eval_seeds'][0]}..{result['eval_seeds'][1]}), env kwargs "
            f"`{json.dumps(result['env_kwargs'])}`.\n\n" + markdown_table(header, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate schedulers on paired held-out episodes.")
    parser.add_argument("--env", default=papi_env.DEFAULT_ENV_ID)
    parser.add_argument("--policies", default="threshold,always-gpu,always-pim,oracle,random")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-kwargs", default="{}", help="JSON dict of environment keyword arguments")
    parser.add_argument("--out", type=Path, default=Path("results/eval"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    try:
        env_kwargs = json.loads(args.env_kwargs)
        result = evaluate(args.env, [p.strip() for p in args.policies.split(",") if p.strip()],
                          args.episodes, args.seed, env_kwargs)
    except (ValueError, FileNotFoundError, gym.error.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json(args.out / "eval.json", result)
    md = to_markdown(result)
    write_text(args.out / "eval.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
