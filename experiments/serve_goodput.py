"""Goodput versus load on a production trace, at a tight SLO: learned schedulers against the
strongest non-learned policies, measured the way serving papers measure.

    python -m experiments.serve_goodput --train-seeds 3 --out results/serve_goodput

1. **Saturation.** PAPI's rule (FCFS admission, FC by the threshold, TLP 1) serves the trace's
   test split under overload (every request at once); its completion rate (the middle 10-60% of
   completions) is the load scale's unit.
2. **Loads.** ``--loads`` fractions of it (default 0.5, 0.65, 0.8, 0.95), offered by compressing
   the test split's arrivals (``rate_scale``).
3. **Agents.** PPO and MaskablePPO (``--algos``; ``papi_env/PapiServe-v0`` in
   experiments/configs/<algo>.yaml, laid over with
   TRAIN_KWARGS: the goodput reward at the tight SLO, trained on the trace's *train* split with
   arrivals drawn per episode from the trace, Poisson and bursty gamma (cv 2-4), at loads spanning
   the evaluated ones), ``--train-seeds`` seeds each, as Ray tasks (experiments.jobs).
4. **Evaluation** at each load on held-out windows of the *test* split (experiments.evaluate:
   paired episodes, the goodput objective): PAPI's rule, fixed TLPs, ``validated-tlp`` (the fixed
   TLP chosen on the validation split), ``smartspec`` (goodput-based speculation on the cost model
   with the runtime's acceptance estimate), the lookahead planner (``planner-rollout``: copies of
   the server rolled 4 s ahead per candidate with the requests arrived so far and the estimated
   acceptance rate), random, the one-step oracle (true acceptance rate), the rollout oracle
   (``oracle-rollout``: the same rollouts with the future arrivals and acceptance draws), and the
   agents. The *best deployable* policy at a load is the best of PAPI's rule, validated-tlp,
   smartspec and the lookahead planner by mean goodput there; the learned agents (seeds pooled) are
   compared with it per episode (IQM of the ratio, 95% stratified-bootstrap CI, P(improvement)).
   ``--kv-policy``, ``--token-budget`` and ``--queue-order`` set the server (SERVER_FLAGS: paged
   KV, chunked prefill, queue order) for the saturation, the training and the evaluation alike.
5. **Output**: ``serve_goodput.json`` / ``.md`` and the figure (goodput and SLO attainment, p99
   TTFT and TPOT versus load, mean and 95% CI over episodes, PAPI's saturation marked; PNG + PDF).

Every load point reports whether its episodes were steady (sim.online.queue_growth).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import papi_env
from agents.policies import make_policy
from experiments import fanout, stats
from experiments.cli import UsageError, check_output_dir, positive
from experiments.evaluate import eval_seeds, evaluate, run_episode
from experiments.io import markdown_table, publish, save_figure
from experiments.jobs import TrainJob, add_training_arguments, check_jobs, check_training_arguments, run_jobs
from experiments.plotting import pyplot
from sim.online import load_trace, split_rows, trace_rate, trace_window

SERVE = papi_env.SERVE_ENV_ID
DEFAULT_LOADS = (0.5, 0.65, 0.8, 0.95)  # [D] fractions of PAPI's rule's saturation (the 50-95%)
EVAL_KWARGS = {"trace": "azure-conv", "trace_split": "test", "reward": "goodput", "slo_scale": 2.0,
               "acceptance_rate": 0.7, "requests": 512, "warmup": 64, "max_tlp": 4, "max_steps": 10**6}
"""[D] The evaluated setting: LLaMA-65B on PAPI, the Azure conversation trace's test split, the
tight SLO (2x unloaded), drafts accepted with probability 0.7, windows of 512 requests, the first
64 unscored."""
TRAIN_KWARGS = {"trace_split": "train", "arrival": ["trace", "trace", "poisson", "gamma"], "cv": [2.0, 4.0],
                "requests": 256, "warmup": 32, "shaping": "on-track"}
"""[D] What training changes: the train split, half the episodes trace windows and half generated
(Poisson or gamma with cv 2-4, lengths from the train split), shorter episodes, the goodput reward
shaped by the requests still on track (``--shaping``)."""
SERVER_FLAGS = {"kv_policy": ("reserve", "the KV cache: reserve (full length at admission) or paged (vLLM)"),
                "token_budget": (None, "chunked prefill's tokens per iteration (default: whole prompts)"),
                "queue_order": ("fcfs", "admission order: fcfs, shortest, deadline")}
"""The server's settings the study can change (PapiServe-v0's keywords), their defaults and meaning."""
DEPLOYABLE = ("threshold", "validated-tlp", "smartspec", "planner-rollout")
PANELS = ("goodput_rps", "slo_attainment", "ttft_p99_s", "tpot_p99_s")  # the figure's, in its order
TRAINABLE = ("ppo", "maskable_ppo")  # algorithms with a PapiServe-v0 block in experiments/configs
BASELINES = ("threshold", "fixed-tlp:2", "fixed-tlp:3", "fixed-tlp:4", "validated-tlp", "smartspec", "random",
             "planner-rollout", "oracle", "oracle-rollout")


def split_rate(split: str) -> float:
    """The azure-conv trace split's mean arrival rate, requests/s."""
    trace = load_trace(EVAL_KWARGS["trace"])
    lo, hi = split_rows(trace, split)
    return trace_rate(trace_window(trace, lo, hi - lo))


def saturation(spec: str = "threshold", seed: int = 0, eval_kwargs: dict[str, Any] | None = None) -> float:
    """Completions per second of ``spec`` serving the test split under overload (requests/s), on
    the evaluated server (``eval_kwargs``, default EVAL_KWARGS)."""
    env = gym.make(SERVE, **{**(eval_kwargs or EVAL_KWARGS), "rate_scale": 1e4, "requests": 1024, "warmup": 0})
    run_episode(env, make_policy(spec, env=env), eval_seeds(1, seed)[0])
    done = np.sort(env.unwrapped.server.finish_s)
    n = len(done)
    return (int(0.6 * n) - int(0.1 * n)) / float(done[int(0.6 * n)] - done[int(0.1 * n)])


def train_jobs(algos: list[str], seeds: int, loads: list[float], sat: float, out: Path, steps: int | None,
               reuse: bool, eval_kwargs: dict[str, Any], shaping: str = TRAIN_KWARGS["shaping"]) -> list[TrainJob]:
    """Runs of each algorithm on the train split at loads spanning the evaluated ones (TRAIN_KWARGS)."""
    rates = [round(f * sat, 3) for f in loads]
    scales = [round(r / split_rate("train"), 4) for r in rates]
    kwargs = {**eval_kwargs, **TRAIN_KWARGS, "rate": rates, "rate_scale": scales, "shaping": shaping}
    kwargs.pop("max_steps")
    return [TrainJob(algo, SERVE, seed, str(out / "runs"), steps, env_kwargs=kwargs, label="goodput",
                     resume="continue" if reuse else "overwrite") for algo in algos for seed in range(seeds)]


def by_algo(agents: list[str]) -> dict[str, list[str]]:
    """Learned policies ``ALGO:PATH`` grouped by algorithm (their seeds are pooled)."""
    groups: dict[str, list[str]] = {}
    for agent in agents:
        groups.setdefault(agent.partition(":")[0], []).append(agent)
    return groups


def evaluate_load(job: tuple[float, list[str], int, int, dict[str, Any]]) -> dict[str, Any]:
    """Every policy at one load scale (a Ray task): experiments.evaluate's record."""
    scale, agents, episodes, seed, eval_kwargs = job
    return evaluate(SERVE, list(BASELINES), episodes, seed, {**eval_kwargs, "rate_scale": scale},
                    extra_policies=agents)


def summarise_load(load: float, rate: float, result: dict[str, Any], agents: list[str]) -> dict[str, Any]:
    """One load point: each policy's means and CIs, the best deployable policy, the agents against it."""
    rows = result["policies"]
    point: dict[str, Any] = {"load": load, "rate_rps": rate, "policies": {}}
    for name, r in rows.items():
        ep = r["serving_episodes"]
        point["policies"][name] = {
            "kind": r["kind"], "goodput_rps": stats.mean_ci(ep["goodput_rps"]),
            "slo_attainment": stats.mean_ci(ep["slo_attainment"]),
            "ttft_p99_s": stats.mean_ci(ep["ttft_p99_s"]), "tpot_p99_s": stats.mean_ci(ep["tpot_p99_s"]),
            "steady_share": float(np.mean(ep["steady"])), "mean_tlp": r["mean_tlp"],
            "episodes": {key: ep[key] for key in PANELS}, "episode_goodput": ep["goodput_rps"]}
    best = max(DEPLOYABLE, key=lambda n: point["policies"][n]["goodput_rps"]["mean"])
    point["best_deployable"] = best
    base = np.array(point["policies"][best]["episode_goodput"])
    oracle = np.array([max(a, b) for a, b in zip(point["policies"]["oracle"]["episode_goodput"],
                                                 point["policies"]["oracle-rollout"]["episode_goodput"], strict=True)])
    point["best_vs_oracle"] = float(base.mean() / oracle.mean()) if oracle.mean() > 0 else math.nan
    point["learned"] = {}
    for algo, members in by_algo(agents).items():
        learned = np.array([point["policies"][a]["episode_goodput"] for a in members])  # seeds x episodes
        ratio = stats.finite(stats.paired_ratios(learned, base[None, :]).ravel())
        point["learned"][algo] = {
            "vs_best": stats.iqm_ci(ratio), "p_improvement": stats.probability_of_improvement(learned, base[None, :]),
            "seeds": len(members),
            **{key: stats.mean_ci([point["policies"][a]["episodes"][key] for a in members]) for key in PANELS}}
    return point


def to_markdown(record: dict[str, Any]) -> str:
    names = list(record["points"][0]["policies"])
    rows = []
    for p in record["points"]:
        for name in names:
            r = p["policies"][name]
            rows.append([f"{p['load']:.2f} ({p['rate_rps']:.2f})", name if len(name) < 30 else "learned:…" + name[-30:],
                         stats.fmt_ci({"iqm": r["goodput_rps"]["mean"], **r["goodput_rps"]}, digits=2),
                         f"{r['slo_attainment']['mean']:.3f}", f"{r['ttft_p99_s']['mean'] * 1e3:.0f}",
                         f"{r['tpot_p99_s']['mean'] * 1e3:.1f}", f"{r['mean_tlp']:.2f}", f"{r['steady_share']:.2f}"])
    server = ", ".join(f"{k}={record['env_kwargs'].get(k, d)}" for k, (d, _) in SERVER_FLAGS.items())
    text = (f"# Goodput versus load on the Azure conversation trace (test split), tight SLO\n\n"
            f"Server: {server}. PAPI rule saturation {record['saturation_rps']:.2f} req/s; "
            f"{record['episodes']} held-out windows of "
            f"{record['env_kwargs']['requests']} requests per load (the first {record['env_kwargs']['warmup']} "
            f"unscored); TTFT target "
            f"{record['ttft_target_s'] * 1e3:.0f} ms, TPOT target {record['tpot_target_s'] * 1e3:.1f} ms.\n\n"
            + markdown_table(["load (req/s)", "policy", "goodput req/s [95% CI]", "SLO attainment", "TTFT p99 (ms)",
                              "TPOT p99 (ms)", "mean TLP", "steady share"], rows))
    if record["agents"]:
        comp = []
        for p in record["points"]:
            best_ttft = p["policies"][p["best_deployable"]]["ttft_p99_s"]["mean"]
            for algo, c in p["learned"].items():
                comp.append([f"{p['load']:.2f}", f"{algo} ({c['seeds']} seeds)", p["best_deployable"],
                             stats.fmt_ci(c["vs_best"]), f"{c['p_improvement']['p']:.2f}", f"{p['best_vs_oracle']:.3f}",
                             f"{c['ttft_p99_s']['mean'] * 1e3:.0f} vs {best_ttft * 1e3:.0f}"])
        text += ("\n## Learned (seeds pooled) against the best deployable policy\n\n"
                 + markdown_table(["load", "agent", "best deployable", "learned / best: IQM [95% CI]",
                                   "P(learned > best)", "best / best oracle per episode (goodput)",
                                   "TTFT p99 ms: learned vs best"], comp)
                 + "\nDeployable: PAPI's rule, validated-tlp, smartspec, planner-rollout (the oracle knows the "
                 "acceptance rate; "
                 "fixed TLPs are chosen here in hindsight, so they are shown but not counted).\n")
    return text


def plot(record: dict[str, Any], path: Path) -> None:
    """Four panels versus offered load: the deployable policies, the two oracles and each learning
    algorithm (its seeds pooled), mean and 95% CI over episodes, series offset a little in x."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    labels = {"goodput_rps": ("goodput (req/s)", 1.0), "slo_attainment": ("SLO attainment", 1.0),
              "ttft_p99_s": ("TTFT p99 (ms)", 1e3), "tpot_p99_s": ("TPOT p99 (ms)", 1e3)}
    series = [(name, lambda p, key, n=name: p["policies"][n][key])
              for name in ("threshold", "validated-tlp", "smartspec", "planner-rollout", "oracle", "oracle-rollout")]
    series += [(f"{algo} ({len(members)} seeds)", lambda p, key, a=algo: p["learned"][a][key])
               for algo, members in by_algo(record["agents"]).items()]
    colors = plt.get_cmap("tab10").colors
    width = 0.012 * (record["points"][-1]["rate_rps"] - record["points"][0]["rate_rps"] or 1.0)
    for ax, key in zip(axes.ravel(), PANELS, strict=True):
        label, scale = labels[key]
        for k, (name, get) in enumerate(series):
            xs = [p["rate_rps"] + (k - len(series) / 2) * width for p in record["points"]]
            ci = [get(p, key) for p in record["points"]]
            mean = np.array([c["mean"] for c in ci]) * scale
            err = np.array([[c["mean"] - c["ci_low"], c["ci_high"] - c["mean"]] for c in ci]).T * scale
            ax.errorbar(xs, mean, yerr=err, marker=".", capsize=2, label=name, color=colors[k % len(colors)])
        ax.axvline(record["saturation_rps"], color="grey", linestyle=":")
        ax.set_ylabel(label)
        ax.set_xlabel("offered load (req/s); dotted: PAPI rule's saturation")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("PapiServe-v0 on the Azure conversation trace (test split), tight SLO: mean and 95% CI over episodes")
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Goodput versus load on the Azure trace, tight SLO.")
    add_training_arguments(parser, "each --algos (TRAIN_KWARGS)")
    parser.add_argument("--algos", default="ppo", help="algorithms to train, comma-separated (ppo, maskable_ppo)")
    parser.add_argument("--loads", default=",".join(f"{f:g}" for f in DEFAULT_LOADS),
                        help="fractions of PAPI's rule's saturation, comma-separated")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=EVAL_KWARGS["requests"], help="requests per evaluated window")
    parser.add_argument("--warmup", type=int, default=EVAL_KWARGS["warmup"], help="unscored requests per window")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--kv-policy", default=SERVER_FLAGS["kv_policy"][0], help=SERVER_FLAGS["kv_policy"][1])
    parser.add_argument("--token-budget", type=int, default=None, help=SERVER_FLAGS["token_budget"][1])
    parser.add_argument("--queue-order", default=SERVER_FLAGS["queue_order"][0], help=SERVER_FLAGS["queue_order"][1])
    parser.add_argument("--shaping", default=TRAIN_KWARGS["shaping"], help="the trained agents' shaping: on-track "
                        "or none")
    parser.add_argument("--out", type=Path, default=Path("results/serve_goodput"))
    fanout.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        try:
            loads = [float(f) for f in args.loads.split(",") if f.strip()]
        except ValueError:
            loads = []
        if not loads or any(not (0 < f and math.isfinite(f)) for f in loads):
            raise UsageError(f"--loads must be positive, finite fractions of saturation, got {args.loads!r}")
        positive(args.episodes, "--episodes")
        positive(args.requests, "--requests")
        if not 0 <= args.warmup < args.requests:
            raise UsageError(f"--warmup must be in [0, --requests), got {args.warmup}")
        eval_kwargs = {**EVAL_KWARGS, "requests": args.requests, "warmup": args.warmup}
        server = {"kv_policy": args.kv_policy, "token_budget": args.token_budget, "queue_order": args.queue_order}
        eval_kwargs.update({k: v for k, v in server.items() if v != SERVER_FLAGS[k][0]})
        gym.make(SERVE, **eval_kwargs, shaping=args.shaping)  # ValueError (exit 2) for a bad setting, before any work
        check_training_arguments(args)
        check_output_dir(args.out)
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        if not algos or any(a not in TRAINABLE for a in algos):
            raise UsageError(f"--algos must name algorithms among {list(TRAINABLE)}, got {args.algos!r}")
        sat = saturation(seed=args.eval_seed, eval_kwargs=eval_kwargs)
        jobs = train_jobs(algos, args.train_seeds, loads, sat, args.out, args.total_timesteps, args.reuse, eval_kwargs,
                          args.shaping)
        check_jobs(jobs)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    agents = list(args.agent)
    if jobs:
        agents += [f"{job.algo}:{run / 'best_model.zip'}"
                   for job, run in zip(jobs, run_jobs(jobs, args.num_cpus, args.address), strict=True)]
    test_rate = split_rate("test")
    cells = [(f * sat / test_rate, agents, args.episodes, args.eval_seed, eval_kwargs) for f in loads]
    results = fanout.run_all(evaluate_load, cells, args.num_cpus, args.address)
    env = gym.make(SERVE, **eval_kwargs).unwrapped
    record = {"env": SERVE, "env_kwargs": eval_kwargs, "train_kwargs": {**TRAIN_KWARGS, "shaping": args.shaping},
              "saturation_rps": sat,
              "loads": loads, "episodes": args.episodes, "eval_seed": args.eval_seed, "agents": agents,
              "ttft_target_s": env.ttft_target_s, "tpot_target_s": env.tpot_target_s,
              "points": [summarise_load(f, f * sat, r, agents) for f, r in zip(loads, results, strict=True)]}
    publish(args.out, "serve_goodput", record, to_markdown(record), plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
