"""Evaluate schedulers on the same held-out episodes, paired.

    python -m experiments.evaluate --env papi_env/PapiSchedule-v0 \\
        --policies threshold,always-gpu,always-pim,oracle,random --episodes 50 --seed 0 --out results/eval

Every policy runs the same episodes: episode i is ``env.reset(seed=EVAL_SEED_BASE + 1000 * seed + i)``;
training uses seeds below EVAL_SEED_BASE, so evaluation batches are never trained on.
Writes ``eval.json`` and ``eval.md``: per policy mean +- std of the episode score (the env's
objective, higher is better: tokens/s for latency, tokens/J for energy, tokens^2/(s J) for edp,
penalised tokens/s for latency_target; see papi_env.base), time, energy, tokens/s, J/token,
missed latency targets, the GPU share and mean TLP, and two paired ratios (mean over episodes of
policy score / other score): to PAPI's threshold rule and to the best rule-based policy of the run
(the ``rule`` kind of agents.policies with the highest mean score).
Without ``--policies``, every rule of the variant is run (agents.policies.RULES_BY_VARIANT).
Learned agents: ``ppo:runs/x/best_model.zip`` (see experiments.train).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import papi_env  # noqa: F401  (registers the environments)
from agents.policies import RULES_BY_VARIANT, make_policy, policy_kind
from experiments import stats
from experiments.cli import check_env_kwargs, check_output_dir, parse_env_kwargs, positive
from experiments.io import markdown_table, write_results
from papi_env.base import scalar_info

EVAL_SEED_BASE = 1_000_000
SLOW_FIRST = {"oracle": 0, "planner": 1}  # policy kinds run first when policies run in parallel
REFERENCE = "threshold"


def eval_seeds(episodes: int, seed: int) -> list[int]:
    return [EVAL_SEED_BASE + 1000 * seed + i for i in range(episodes)]


def run_episode(env: gym.Env, policy: Any, seed: int,
                on_step: Callable[[np.ndarray, dict[str, Any]], None] | None = None) -> dict[str, float]:
    """One episode; returns its totals. ``on_step(obs, info)``, if given, sees every step: the
    observation the action was chosen on and the step's info (for per-step analyses)."""
    if hasattr(policy, "bind"):
        policy.bind(env)
    discrete = isinstance(env.action_space, spaces.Discrete)
    obs, _ = env.reset(seed=seed)
    gpu = tlp = 0.0
    steps = 0
    state, episode_start = None, True
    while True:
        action, state = policy.predict(obs, state=state, episode_start=np.array([episode_start]), deterministic=True)
        seen = obs
        obs, _, terminated, truncated, info = env.step(int(action) if discrete else action)
        if on_step is not None:
            on_step(seen, info)
        episode_start = False
        steps += 1
        gpu += info.get("gpu_share", info.get("placement") == "gpu")
        tlp += info["tlp"]
        if terminated or truncated:
            return episode_totals(info, steps, gpu, tlp)


SERVING_METRICS = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "slo_attainment", "goodput_rps",
                   "offered_rps", "queue_growth", "steady")
"""What a PapiServe-v0 episode adds to its totals (sim.online.summarise of its scored requests)."""


def episode_totals(info: dict[str, Any], steps: int, gpu: float, tlp: float) -> dict[str, float]:
    """An episode's totals from its last step's info (a scalar env's, Python numbers), its step
    count and the sums over its steps of the GPU share and the TLP; a serving episode's latency
    summary (SERVING_METRICS) too, NaN where it was truncated before every request finished."""
    serving = {}
    if "summary" in info:
        serving = {key: float(info["summary"].get(key, math.nan)) for key in SERVING_METRICS}
    return {**serving,
        "score": info["score"],
        "time_s": info["episode_time"],
        "energy_j": info["episode_energy"],
        "tokens": info["episode_tokens"],
        "tokens_per_s": info["tokens_per_s"],
        "joules_per_token": info["joules_per_token"],
        "misses": info["episode_misses"] / steps,
        "gpu_share": gpu / steps,
        "mean_tlp": tlp / steps,
        "steps": steps,
    }


def has_vector_form(env_id: str) -> bool:
    """Whether ``env_id`` has a native vector environment (gymnasium's vector_entry_point)."""
    return gym.spec(env_id).vector_entry_point is not None


def run_episodes(env_id: str, env_kwargs: dict[str, Any], policy: Any, seeds: list[int],
                 extra: Callable[[Any, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``run_episode`` of each seed, all at once: one native vector env of len(seeds) (env i reset
    with seeds[i], the same episode as a scalar env reset with it) and one batched ``predict`` per
    step. For policies that act on observation batches (learned agents), not rules that read a scalar
    env. Envs that finish wait (their autoreset episodes are ignored) until the longest ends.
    ``extra(vector_env, i)``, called as environment i's episode ends (before it resets), adds to
    that episode's record (what the totals do not hold, such as a server's per-request metrics)."""
    venv = gym.make_vec(env_id, num_envs=len(seeds), vectorization_mode="vector_entry_point", **env_kwargs)
    if hasattr(policy, "bind"):  # it reads the action space only
        policy.bind(SimpleNamespace(action_space=venv.unwrapped.single_action_space))
    n = len(seeds)
    obs, _ = venv.reset(seed=list(seeds))
    gpu, tlp, steps = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    episodes: list[dict[str, float] | None] = [None] * n
    episode_start = np.ones(n, dtype=bool)
    while running.any():
        action, _ = policy.predict(obs, state=None, episode_start=episode_start, deterministic=True)
        obs, _, terminated, truncated, info = venv.step(action)
        episode_start[:] = False
        steps += running
        share = info["gpu_share"] if "gpu_share" in info else info["placement"] == "gpu"
        gpu += np.where(running, share, 0.0)
        tlp += np.where(running, info["tlp"], 0)
        for i in np.flatnonzero(running & (terminated | truncated)).tolist():
            episodes[i] = episode_totals(scalar_info(info, i), int(steps[i]), float(gpu[i]), float(tlp[i]))
            if extra is not None:
                episodes[i].update(extra(venv.unwrapped, i))
            running[i] = False
    venv.close()
    return episodes


def _paired(eps: list[dict], ref: list[dict]) -> np.ndarray:
    """Per-episode score ratios (stats.paired_ratios: NaN where only the reference scores 0)."""
    return stats.paired_ratios([e["score"] for e in eps], [r["score"] for r in ref])


def episodes_of(env: gym.Env, env_id: str, env_kwargs: dict[str, Any], policy: Any, seeds: list[int],
                batched: bool) -> list[dict[str, float]]:
    """``run_episode`` on ``env`` for each seed; with ``batched`` (a policy that acts on observation
    batches: a learned agent) and a native vector form, all at once (run_episodes, the same episodes)."""
    if batched and has_vector_form(env_id):
        return run_episodes(env_id, env_kwargs, policy, seeds)
    return [run_episode(env, policy, s) for s in seeds]


def policy_name(policy: Any) -> str:
    """A policy's name in results: its spec string, or a policy object's ``name`` (default: its class)."""
    return policy if isinstance(policy, str) else getattr(policy, "name", type(policy).__name__)


def kind_of(policy: Any) -> str:
    """'rule', 'planner', 'oracle', 'floor' or 'learned': of a name (policy_kind), or a policy object's
    ``kind`` attribute (default 'rule')."""
    return policy_kind(policy) if isinstance(policy, str) else getattr(policy, "kind", "rule")


def policy_episodes(job: tuple[str, dict[str, Any], Any, list[int], int]) -> list[dict[str, float]]:
    """The episodes of one policy: job (env id, env kwargs, policy spec or object, episode seeds, seed)."""
    env_id, env_kwargs, spec, seeds, seed = job
    env = gym.make(env_id, **env_kwargs)
    policy = make_policy(spec, env=env, seed=seed) if isinstance(spec, str) else spec
    return episodes_of(env, env_id, env_kwargs, policy, seeds, batched=kind_of(spec) == "learned")


def evaluate(env_id: str, policy_specs: list[Any] | None, episodes: int, seed: int,
             env_kwargs: dict[str, Any] | None = None, extra_policies: list[Any] | None = None,
             num_cpus: int | None = None, address: str | None = None, parallel: bool = False,
             intervals: bool = True) -> dict[str, Any]:
    """Run every policy on the same episodes; return the eval.json structure.

    ``policy_specs`` None: every rule of the variant; ``extra_policies`` are added (learned agents).
    A policy is a name (agents.policies.make_policy) or an object with ``predict`` (and ``bind(env)``
    if it reads the env; ``name`` and ``kind`` attributes name it in the results, default its class
    name and 'rule')."
    ``parallel``: the policies as Ray tasks (experiments.fanout; ``num_cpus``, ``address``), the
    same numbers as one after another. ``intervals=False`` skips the bootstrap statistics
    (``iqm_vs_best_rule`` and ``p_improvement_vs_best_rule`` are None), most of a small evaluation's
    time, for callers that need the means only; every other number is the same."""
    env_kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **env_kwargs)
    seeds = eval_seeds(episodes, seed)
    policies = list({policy_name(p): p for p in [*(policy_specs or RULES_BY_VARIANT[env.unwrapped.variant]),
                                                  *(extra_policies or [])]}.values())
    specs = [policy_name(p) for p in policies]
    if REFERENCE not in [s.partition(":")[0] for s in specs]:
        specs.insert(0, REFERENCE)
        policies.insert(0, REFERENCE)
    kinds = dict(zip(specs, (kind_of(p) for p in policies), strict=True))
    jobs = [(env_id, env_kwargs, policy, seeds, seed) for policy in policies]
    if parallel:  # the slowest policies first (oracles and planners price every action each step)
        from experiments import fanout

        order = sorted(range(len(jobs)), key=lambda j: SLOW_FIRST.get(kinds[specs[j]], len(SLOW_FIRST)))
        runs: list[Any] = [None] * len(jobs)
        for j, result in zip(order, fanout.run_all(policy_episodes, [jobs[j] for j in order], num_cpus, address),
                             strict=True):
            runs[j] = result
    else:
        runs = [policy_episodes(job) for job in jobs]
    per_policy: dict[str, list[dict[str, float]]] = dict(zip(specs, runs, strict=True))
    reward = env.unwrapped.reward_kind
    env.close()
    ref_name = next(s for s in specs if s.partition(":")[0] == REFERENCE)
    rules = [s for s in specs if kinds[s] == "rule"]
    best_rule = max(rules, key=lambda s: np.mean([e["score"] for e in per_policy[s]]))
    result: dict[str, Any] = {"env": env_id, "env_kwargs": env_kwargs, "objective": reward, "episodes": episodes,
                              "seed": seed, "eval_seeds": [seeds[0], seeds[-1]], "reference": ref_name,
                              "best_rule": best_rule, "policies": {}}
    for spec, eps in per_policy.items():
        row: dict[str, Any] = {"kind": kinds[spec]}
        for key in ("score", "time_s", "energy_j", "tokens_per_s", "joules_per_token", "misses", "gpu_share",
                    "mean_tlp"):
            vals = np.array([e[key] for e in eps])
            row[key] = float(vals.mean())
            row[key + "_std"] = float(vals.std())
        ratios = stats.finite(_paired(eps, per_policy[ref_name]))
        row["ratio_vs_threshold"] = float(ratios.mean()) if ratios.size else math.nan
        row["ratio_vs_threshold_std"] = float(ratios.std()) if ratios.size else math.nan
        row["ratio_vs_threshold_min"] = float(ratios.min()) if ratios.size else math.nan
        best = stats.finite(_paired(eps, per_policy[best_rule]))
        row["ratio_vs_best_rule"] = float(best.mean()) if best.size else math.nan
        row["ratio_vs_best_rule_std"] = float(best.std()) if best.size else math.nan
        row["iqm_vs_best_rule"] = stats.iqm_ci(best) if intervals and best.size else None
        row["p_improvement_vs_best_rule"] = stats.probability_of_improvement(
            [e["score"] for e in eps], [e["score"] for e in per_policy[best_rule]]) if intervals else None
        if SERVING_METRICS[0] in eps[0]:
            row["serving_episodes"] = {key: [float(e[key]) for e in eps] for key in SERVING_METRICS}
        for key in SERVING_METRICS if SERVING_METRICS[0] in eps[0] else ():
            vals = np.array([e[key] for e in eps])
            row[key] = float(np.nanmean(vals)) if not np.isnan(vals).all() else math.nan
        row["episode_scores"] = [float(e["score"]) for e in eps]
        row["energy_eff_vs_threshold"] = float(np.mean([r["joules_per_token"] / e["joules_per_token"]
                                                        for e, r in zip(eps, per_policy[ref_name], strict=True)]))
        result["policies"][spec] = row
    return result


SCORE_UNITS = {"latency": "tokens/s", "energy": "tokens/J", "edp": "tokens²/(s·J)",
               "latency_target": "penalised tokens/s"}


def _mean_std(mean: float, std: float) -> str:
    """'1588 ± 1012' (same precision for both; no scientific notation for ordinary scores)."""
    digits = max(0, 3 - len(str(int(abs(mean))))) if abs(mean) >= 1 else 4
    return f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def to_markdown(result: dict[str, Any]) -> str:
    objective = result.get("objective", "latency")
    best, ref = result["best_rule"], result["reference"]
    targets = objective == "latency_target"  # the missed-target share only means something there
    rows = []
    for name, r in result["policies"].items():
        label = name if len(name) < 40 else name.partition(":")[0] + ":…/" + Path(name.partition(":")[2]).parent.name
        row = [label, r["kind"], _mean_std(r["score"], r["score_std"]), f"{r['tokens_per_s']:,.1f}",
               f"{r['joules_per_token']:.3f}"]
        if targets:
            row.append(f"{r['misses']:.2f}")
        row += [f"{r['gpu_share']:.2f}", f"{r['mean_tlp']:.2f}",
                f"{r['ratio_vs_threshold']:.4f} ± {r['ratio_vs_threshold_std']:.4f}"]
        if best != ref:
            row.append(f"{r['ratio_vs_best_rule']:.4f} ± {r['ratio_vs_best_rule_std']:.4f}")
        if r["iqm_vs_best_rule"] is not None:
            row += [stats.fmt_ci(r["iqm_vs_best_rule"], digits=4), f"{r['p_improvement_vs_best_rule']['p']:.2f}"]
        else:  # evaluated without intervals
            row += ["-", "-"]
        rows.append(row)
    unit = SCORE_UNITS.get(objective, "score")
    header = ["policy", "kind", f"score ({unit})", "tokens/s", "J/token"]
    if targets:
        header.append("missed-target share")
    header += ["GPU share", "mean TLP", f"score / {ref}"]
    if best != ref:
        header.append(f"score / best rule ({best})")
    header += [f"score / {best}: IQM [95% CI]", f"P(> {best})"]
    return (f"# Evaluation on {result['env']} ({objective})\n\n{result['episodes']} held-out "
            f"episodes (seeds {result['eval_seeds'][0]}..{result['eval_seeds'][1]}), env kwargs "
            f"`{json.dumps(result['env_kwargs'])}`; best rule: {best}.\n\n" + markdown_table(header, rows)
            + "\nScore: the objective per token, higher is better; mean ± standard deviation over episodes. "
            "Ratios are paired per episode: mean ± standard deviation over episodes; IQM [95% CI]: "
            "interquartile mean with rliable's stratified-bootstrap interval (episodes resampled); "
            "P(> best rule): probability that the policy scores higher than the best rule on a random "
            "episode (ties count half).\n" + _serving_table(result))


def _serving_table(result: dict[str, Any]) -> str:
    """PapiServe-v0's latency table (means over episodes of each one's percentiles), or ''."""
    policies = result["policies"]
    if not policies or SERVING_METRICS[0] not in next(iter(policies.values())):
        return ""
    rows = [[name if len(name) < 40 else name.partition(":")[0] + ":…", f"{r['ttft_p50_s'] * 1e3:.1f}",
             f"{r['ttft_p99_s'] * 1e3:.1f}", f"{r['tpot_p50_s'] * 1e3:.2f}", f"{r['tpot_p99_s'] * 1e3:.2f}",
             f"{r['slo_attainment']:.3f}", f"{r['goodput_rps']:.2f}", f"{r['offered_rps']:.2f}",
             f"{r['steady']:.2f}", f"{r['joules_per_token']:.3f}"] for name, r in policies.items()]
    return ("\n## Serving latency (scored requests; means over episodes of each episode's percentiles)\n\n"
            + markdown_table(["policy", "TTFT p50 (ms)", "TTFT p99 (ms)", "TPOT p50 (ms)", "TPOT p99 (ms)",
                              "SLO attainment", "goodput (req/s)", "offered (req/s)", "steady share", "J/token"],
                             rows)
            + "\nSteady share: the share of episodes whose queueing delay grew by less than "
            "sim.online.STEADY_GROWTH of the elapsed time (sim.online.queue_growth); past saturation the "
            "numbers are a growing queue's transient.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate schedulers on paired held-out episodes.")
    parser.add_argument("--env", default=papi_env.DEFAULT_ENV_ID)
    parser.add_argument("--policies", default=None,
                        help="comma-separated policies (default: every rule of the variant)")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-kwargs", default="{}", help="JSON dict of environment keyword arguments")
    parser.add_argument("--out", type=Path, default=Path("results/eval"))
    parser.add_argument("--no-intervals", action="store_true",
                        help="skip the bootstrap IQM intervals and P(improvement) (means only; faster)")
    args = parser.parse_args(argv)
    try:
        positive(args.episodes, "--episodes")
        check_output_dir(args.out)
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        check_env_kwargs(args.env, env_kwargs)
        specs = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else None
        result = evaluate(args.env, specs, args.episodes, args.seed, env_kwargs, intervals=not args.no_intervals)
        md = to_markdown(result)
        write_results(args.out, {"eval.json": result, "eval.md": md})
    except (ValueError, FileNotFoundError, gym.error.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
