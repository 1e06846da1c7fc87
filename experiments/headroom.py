"""How much could any scheduler gain over the best rule? Oracle and planner headroom, no training.

    python -m experiments.headroom --episodes 20 --out results/headroom      (`make headroom`)

A learned agent sees only what the runtime sees, so on each variant it can at best do what the
oracle does (the oracle reads the hidden state: true acceptance probabilities, exact costs). This
script measures that ceiling across scenarios (hardware, model, workload, acceptance model), for
every objective, on paired held-out episodes (the seeds of experiments.evaluate):

- ``best rule``: the best rule-based policy of the cell. On PapiSpecSchedule-v0 every fixed
  speculation length 1..max_tlp is a candidate (the best one in hindsight per cell, which no
  deployment knows in advance), as are the threshold rule and Leviathan's adaptive rule.
- ``planner``: greedy-ema (the cost model with the runtime's acceptance estimates).
- ``oracle``: greedy with the hidden state; exact for placement on the kernel and split variants
  (latency, energy, latency target), greedy per iteration elsewhere.
- ``lookahead oracle`` (PapiSpecSchedule-v0, latency): the speculation length that would finish
  the batch soonest if kept, from the true acceptance and remaining lengths (agents.policies.
  LookaheadOracle). On the spec variant neither oracle is a proven bound; the larger of the two
  is the best ceiling we have.
- On PapiSpecSchedule-v0, ``per-request TLP``: the gain in cost per expected token that one
  speculation length *per request* (instead of one per batch) would add, along the oracle's
  trajectory (see :func:`ragged_gain`). An estimate, not a simulated policy.

Writes ``headroom.json`` and ``headroom.md`` under ``--out`` and prints the table; cells of an
earlier run in the same directory that this run does not compute are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import papi_env
from agents.planners import Oracle
from experiments import evaluate, fanout, stats
from experiments.cli import UsageError, check_output_dir
from experiments.evaluate import eval_seeds
from experiments.io import markdown_table, write_json, write_text
from hardware.costs import Cost

SPEC = "papi_env/PapiSpecSchedule-v0"
H100 = {"base": "papi", "gpu": "H100"}

SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "papi_env/PapiKernelSchedule-v0": {
        "default": {},
        "large-batches": {"batch_size": [64, 128], "tlp": [2, 4, 8]},
        "h100": {"system": H100},
        "gpt3-175b": {"model": "gpt3-175b"},
    },
    "papi_env/PapiSplitSchedule-v0": {
        "default": {},
        "large-batches": {"batch_size": [64, 128], "tlp": [2, 4, 8]},
        "h100": {"system": H100},
        "gpt3-175b": {"model": "gpt3-175b"},
    },
    SPEC: {
        "default": {},
        "homogeneous": {  # one acceptance for all: mu 0.65, no spread, no drift
            "acceptance": {"mean_range": [0.65, 0.65], "request_spread": 0.0, "drift": 0.0}},
        "wide-mean": {"acceptance": {"mean_range": [0.2, 0.95]}},
        "spread-2": {"acceptance": {"request_spread": 2.0}},
        "drift-1.5": {"acceptance": {"drift": 1.5}},
        "fast-drift": {"acceptance": {"correlation_iters": 4.0}},
        "batch-128": {"batch_size": 128},
        "h100": {"system": H100},
        "gpt3-175b": {"model": "gpt3-175b"},
        "draft-llama-7b": {"draft_model": "llama-7b"},
    },
}
RULES = {
    "papi_env/PapiKernelSchedule-v0": ["threshold", "kernel-threshold", "always-gpu", "always-pim"],
    "papi_env/PapiSplitSchedule-v0": ["threshold", "split-table", "always-gpu", "always-pim"],
    SPEC: ["threshold", "leviathan"] + [f"fixed-tlp:{k}" for k in range(1, 9)],
}
LAMBDAS = np.linspace(0.0, 1.0, 21)


# ------------------------------------------------------------------ per-request speculation
def ragged_cost(env: Any, tlps: np.ndarray, ctx: np.ndarray, unit: str) -> Cost:
    """Seconds and joules of one iteration in which live request i verifies ``tlps[i]`` tokens.

    FC, all-reduces, transfers, norms and activations see the batch's token count sum(tlps)
    (they depend on tokens only); attention runs once per group of equal TLP (its context and
    query reuse are per request); the draft model runs max(tlps) - 1 sequential steps, step j
    for the requests with tlps > j. ``ctx`` are the requests' contexts before this iteration.
    """
    cm, draft = env.cost_model, env.draft
    tokens = int(tlps.sum())
    c = cm.fc(tokens, unit) + cm.communication(1, tokens) + cm.other(1, tokens)
    for t in np.unique(tlps):
        group = tlps == t
        c = c + cm.attention(int(group.sum()), int(t), float((ctx[group] + t).sum()))
    for j in range(1, int(tlps.max())):
        drafting = tlps > j
        c = c + draft.step(int(drafting.sum()), float((ctx[drafting] + 1).sum()))  # as DraftCost.draft
    return c


def best_time_per_token(env: Any, p: np.ndarray, remaining: np.ndarray, ctx: np.ndarray,
                        per_request: bool) -> float:
    """The least seconds per expected token this iteration, one TLP per batch or per request.

    Per request, the candidates are the price family TLP_i = 1 + #{k < max_tlp : p_i^k > lambda}
    (request i drafts while its next token's acceptance chance exceeds the price lambda, for
    lambda in LAMBDAS) together with every uniform TLP, each with FC on either unit."""
    n = len(p)
    candidates = [np.full(n, t) for t in range(1, env.max_tlp + 1)]
    if per_request:
        powers = p[:, None] ** np.arange(1, env.max_tlp)[None, :]
        candidates += [1 + (powers > lam).sum(axis=1) for lam in LAMBDAS]
    best = np.inf
    for tlps in candidates:
        k = float(np.minimum((1.0 - p**tlps) / np.maximum(1.0 - p, 1e-12), remaining).sum())
        for unit in ("pim", "gpu"):
            best = min(best, ragged_cost(env, tlps, ctx, unit).time / k)
    return best


def ragged_gain(env_kwargs: dict[str, Any], seeds: list[int]) -> float:
    """Time-weighted mean over the oracle's iterations of (best seconds per expected token with
    one TLP per batch) / (with one TLP per request), latency objective. Requests' contexts are
    taken equal to the batch mean (the env tracks their sum)."""
    env = gym.make(SPEC, **{**env_kwargs, "reward": "latency"}).unwrapped
    num = den = 0.0
    oracle = Oracle(env)
    for seed in seeds:
        env.reset(seed=seed)
        while True:
            p_all = env.acceptance.probabilities()
            mask = env.batch.live_mask()
            p, remaining = p_all[mask], env.batch.remaining()[mask].astype(float)
            ctx = np.full(int(mask.sum()), env.sum_context / env.batch.live - env.tlp)
            uniform = best_time_per_token(env, p, remaining, ctx, per_request=False)
            ragged = best_time_per_token(env, p, remaining, ctx, per_request=True)
            num, den = num + uniform, den + ragged
            _, _, terminated, truncated, _ = env.step(oracle.act(env))
            if terminated or truncated:
                break
    env.close()
    return num / den


# ----------------------------------------------------------------------------------- cells
def cell(args: tuple[str, str, str, int, bool]) -> dict[str, Any]:
    env_id, scenario, objective, episodes, ragged = args
    kwargs = {**SCENARIOS[env_id][scenario], "reward": objective}
    extra = ["greedy-ema"] if env_id == SPEC else []
    if env_id == SPEC and objective == "latency":
        extra.append("oracle-lookahead")
    result = evaluate.evaluate(env_id, RULES[env_id] + extra + ["oracle"], episodes, 0, kwargs)
    p, best = result["policies"], result["best_rule"]

    def ratio(name: str) -> tuple[float, float] | None:
        if name not in p:
            return None
        return p[name]["ratio_vs_best_rule"], p[name]["ratio_vs_best_rule_std"] / np.sqrt(episodes)

    row = {"env": env_id, "scenario": scenario, "objective": objective, "episodes": episodes,
           "env_kwargs": kwargs, "best_rule": best, "best_rule_vs_threshold": p[best]["ratio_vs_threshold"],
           "oracle_vs_best_rule": ratio("oracle"), "planner_vs_best_rule": ratio("greedy-ema"),
           "lookahead_oracle_vs_best_rule": ratio("oracle-lookahead"),
           "oracle_iqm": p["oracle"]["iqm_vs_best_rule"],
           "planner_iqm": p["greedy-ema"]["iqm_vs_best_rule"] if "greedy-ema" in p else None,
           "per_request_tlp_gain": None}
    if ragged and env_id == SPEC and objective == "latency":
        row["per_request_tlp_gain"] = ragged_gain(SCENARIOS[env_id][scenario], eval_seeds(min(episodes, 8), 0))
    return row


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with the cells of ``new`` replaced or added, in SCENARIOS order."""
    key = lambda r: (r["env"], r["scenario"], r["objective"])  # noqa: E731
    fresh = {key(r) for r in new}
    order = {(env, sc, o): i for i, (env, sc, o) in enumerate(
        (env, sc, o) for env in SCENARIOS for sc in SCENARIOS[env] for o in papi_env.REWARDS)}
    return sorted([r for r in old if key(r) not in fresh] + new, key=lambda r: order.get(key(r), len(order)))


def to_markdown(rows: list[dict[str, Any]]) -> str:
    def fmt(r):
        return "-" if r is None else f"{r[0]:.3f} ± {r[1]:.3f}"

    table = [[r["env"].split("/")[1], r["scenario"], r["objective"], r["best_rule"],
              f"{r['best_rule_vs_threshold']:.3f}", fmt(r["planner_vs_best_rule"]), fmt(r["oracle_vs_best_rule"]),
              stats.fmt_ci(r["oracle_iqm"]) if r.get("oracle_iqm") else "-",
              fmt(r["lookahead_oracle_vs_best_rule"]),
              "-" if r["per_request_tlp_gain"] is None else f"{r['per_request_tlp_gain']:.4f}"] for r in rows]
    n = rows[0]["episodes"] if rows else 0
    return ("# Headroom: what any scheduler could gain over the best rule\n\n"
            f"{n} paired held-out episodes per cell; ratios are mean ± standard error of the paired per-episode "
            "score ratio (higher is better); 'best rule' is the best in hindsight of each cell, every fixed "
            "speculation length 1..8 included. 'per-request TLP' (latency, spec only): gain in seconds per "
            "expected token from one speculation length per request instead of per batch, along the oracle's "
            "trajectory (estimate; experiments.headroom.ragged_gain). Oracle IQM [95% CI]: interquartile mean of "
            "the per-episode ratio with rliable's stratified-bootstrap interval.\n\n"
            + markdown_table(["variant", "scenario", "objective", "best rule", "best rule / threshold",
                              "planner / best rule", "oracle / best rule", "oracle IQM [95% CI]",
                              "lookahead oracle / best rule",
                              "per-request TLP"], table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Oracle and planner headroom over the best rule, per scenario.")
    parser.add_argument("--variants", default=",".join(v.split("/")[1].removesuffix("-v0") for v in SCENARIOS))
    parser.add_argument("--objectives", default=",".join(papi_env.REWARDS))
    parser.add_argument("--scenarios", default=None, help="comma-separated scenario names (default: all of "
                        "each variant's; see SCENARIOS)")
    parser.add_argument("--episodes", type=int, default=20)
    fanout.add_arguments(parser)
    parser.add_argument("--no-ragged", action="store_true", help="skip the per-request TLP estimate")
    parser.add_argument("--out", type=Path, default=Path("results/headroom"))
    args = parser.parse_args(argv)
    names = {v.split("/")[1].removesuffix("-v0"): v for v in SCENARIOS}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    known = {s for v in SCENARIOS.values() for s in v}
    chosen = known if args.scenarios is None else {s.strip() for s in args.scenarios.split(",") if s.strip()}
    bad = ([v for v in variants if v not in names] + [o for o in objectives if o not in papi_env.REWARDS]
           + sorted(chosen - known))
    if bad or args.episodes < 1 or (args.num_cpus is not None and args.num_cpus < 1):
        parser.error(f"unknown {bad}; variants {list(names)}, objectives {list(papi_env.REWARDS)}, scenarios "
                     f"{sorted(known)}; --episodes and --num-cpus must be >= 1")
    try:
        check_output_dir(args.out)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    jobs = [(names[v], s, o, args.episodes, not args.no_ragged)
            for v in variants for s in SCENARIOS[names[v]] if s in chosen for o in objectives]
    if not jobs:
        parser.error("no cell: none of the chosen scenarios belongs to the chosen variants")
    rows = fanout.run_all(cell, jobs, args.num_cpus, args.address)  # Ray tasks, one CPU each
    previous = args.out / "headroom.json"  # keep the other cells of an earlier run; this run's replace theirs
    rows = merge_rows(json.loads(previous.read_text()) if previous.exists() else [], rows)
    write_json(args.out / "headroom.json", rows)
    md = to_markdown(rows)
    write_text(args.out / "headroom.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
