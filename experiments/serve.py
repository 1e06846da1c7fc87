"""The standard serving figure: p50/p99 TTFT and TPOT versus request rate, light load to saturation.

    python -m experiments.serve --train-seeds 3 --out results/serve          (`make serve`)
    python -m experiments.serve --agent ppo:results/serve/runs/ppo_PapiServe-v0_s0/best_model.zip --out results/serve

On PapiServe-v0 (LLaMA-65B, creative-writing lengths, Poisson arrivals or, with ``--arrival gamma
--cv C``, bursts; drafts accepted with probability ``--acceptance-rate``), every policy serves the
same held-out episodes at every rate (seeds of experiments.evaluate):

- ``GPU-only`` and ``A100+AttAcc``: the baseline systems, FCFS continuous batching, FC on the GPUs,
  no speculation (TLP 1);
- ``PAPI rule``: the PAPI system, FCFS with PAPI's threshold for FC placement, TLP 1;
- ``PAPI rule, validated TLP``: the same with the fixed TLP that scores best on validation
  episodes at that rate (agents.rules.ValidatedTLP: seeds no evaluation uses), as a deployment
  would tune it;
- ``PAPI rule, best fixed TLP``: the fixed TLP in 1..max_tlp that gives the least mean latency at
  that rate, chosen in hindsight per rate on the evaluated episodes themselves: an upper reference
  for fixed TLPs, shown in the table, not a deployable baseline;
- each ``--agent``: a learned policy (FC unit, TLP and admission) on the PAPI system, its seeds'
  episodes run at once on the native vector env (experiments.evaluate.run_episodes).

Percentiles pool the scored requests (after each episode's warm-up) of all episodes. The
saturation throughput of each policy is its completion rate under overload (``--requests`` x 4
requests arriving at once), between 10% and 60% of them done. Learned vs rules: IQM with 95%
stratified-bootstrap CI of the per-episode ratio of scores (1 / mean latency), paired.

Writes serve.json, serve.md and serve.png (and .pdf) under ``--out``; cells run as Ray tasks.
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
from experiments.cli import UsageError, check_output_dir, finite, positive
from experiments.evaluate import eval_seeds, kind_of, run_episode, run_episodes
from experiments.io import markdown_table, publish, save_figure
from experiments.jobs import TrainJob, add_training_arguments, check_jobs, check_training_arguments, run_jobs
from experiments.plotting import pyplot
from sim.online import summarise

SERVE = papi_env.SERVE_ENV_ID
BASELINES = {  # label: (system, policy spec)
    "GPU-only": ("gpu_only", "always-gpu"),
    "A100+AttAcc": ("a100_attacc", "always-gpu"),
    "PAPI rule": ("papi", "threshold"),
}
VALIDATED = "PAPI rule, validated TLP"
BEST_TLP = "PAPI rule, best fixed TLP"  # in hindsight: a reference, not a baseline
DEFAULT_RATES = (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 32.0)


def _requests(server: Any, settings: Any) -> dict[str, Any]:
    """An ended episode's scored requests' metrics: its server (sim.online.OnlineServer, which holds
    its latency targets) and the env (or vector env core) whose warm-up scores it."""
    if not server.done:
        raise RuntimeError(f"an episode was truncated at max_steps={settings.max_steps} before every request "
                           "finished; pass a larger max_steps")
    m = server.request_metrics()
    scored = slice(settings.warmup, None)
    return {"ttft": m["ttft_s"][scored], "tpot": m["tpot_s"][scored], "latency": m["latency_s"][scored],
            "finish": server.finish_s.copy(),
            "summary": summarise(server, settings.warmup, server.ttft_target_s, server.tpot_target_s)}


def _episode(env: gym.Env, policy: Any, seed: int) -> dict[str, Any]:
    """One episode (experiments.evaluate.run_episode), then its scored requests' metrics."""
    score = run_episode(env, policy, seed)["score"]
    return {"score": score, **_requests(env.unwrapped.server, env.unwrapped)}


def _vector_requests(venv: Any, i: int) -> dict[str, Any]:
    """_requests of environment i of a native vector env (run_episodes' ``extra``)."""
    return _requests(venv.core.server(i), venv.core)


def cell(job: tuple[str, str, str, float, int, int, dict]) -> dict[str, Any]:
    """One policy at one rate over the held-out episodes (a Ray task): pooled percentiles and the
    per-episode scores; rate 0 means the overload run that measures saturation throughput."""
    label, system, spec, rate, episodes, eval_seed, kwargs = job
    if rate == 0:  # overload: every request at once, from a queue that stays full
        env = gym.make(SERVE, system=system, **{**kwargs, "rate": 1e6, "requests": 4 * kwargs["requests"],
                                                "warmup": 0})
        ep = _episode(env, make_policy(spec, env=env), eval_seeds(1, eval_seed)[0])
        done = np.sort(ep["finish"])
        n = len(done)
        lo, hi = done[int(0.1 * n)], done[int(0.6 * n)]
        return {"label": label, "spec": spec, "saturation_rps": (int(0.6 * n) - int(0.1 * n)) / (hi - lo)}
    settings = {**kwargs, "system": system, "rate": rate}
    seeds = eval_seeds(episodes, eval_seed)
    if kind_of(spec) == "learned":  # every episode at once, one batched predict per step
        eps = run_episodes(SERVE, settings, make_policy(spec), seeds, extra=_vector_requests)
        eps = [{key: e[key] for key in ("score", "ttft", "tpot", "latency", "finish", "summary")} for e in eps]
    else:
        env = gym.make(SERVE, **settings)
        policy = make_policy(spec, env=env)
        eps = [_episode(env, policy, s) for s in seeds]
    return {"label": label, "spec": spec, "system": system, "rate": rate, "episodes": eps}


def pooled(label: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One point of a curve from the cells of one policy at one rate (several for the seeds of a
    learned policy): percentiles over all their scored requests; episode scores per seed."""
    eps = [e for c in cells for e in c["episodes"]]
    ttft = [e["ttft"] for e in eps]
    tpot = [e["tpot"][~np.isnan(e["tpot"])] for e in eps]
    tpot = [t for t in tpot if t.size] or [np.array([np.nan])]
    latency = np.concatenate([e["latency"] for e in eps])
    point: dict[str, Any] = {"label": label, "specs": [c["spec"] for c in cells], "system": cells[0]["system"],
                             "rate": cells[0]["rate"]}
    for key, samples, q in (("ttft_p50_s", ttft, 0.5), ("ttft_p99_s", ttft, 0.99), ("tpot_p50_s", tpot, 0.5),
                            ("tpot_p99_s", tpot, 0.99)):  # pooled over requests, CI over episodes
        ci = stats.pooled_quantile_ci(samples, q)
        point[key], point[key + "_ci"] = ci["value"], [ci["ci_low"], ci["ci_high"]]
    return {**point, "latency_mean_s": float(latency.mean()),
            "slo_attainment": float(np.mean([e["summary"]["slo_attainment"] for e in eps])),
            "goodput_rps": float(np.mean([e["summary"]["goodput_rps"] for e in eps])),
            "joules_per_token": float(np.mean([e["summary"]["joules_per_token"] for e in eps])),
            "episode_scores": [[float(e["score"]) for e in c["episodes"]] for c in cells]}


def run(agents: list[str], rates: list[float], episodes: int, eval_seed: int, kwargs: dict[str, Any],
        num_cpus: int | None = None, address: str | None = None) -> dict[str, Any]:
    """Every policy at every rate, plus each policy's saturation throughput; the serve.json record."""
    max_tlp = int(kwargs.get("max_tlp", 4))
    learned = f"learned ({agents[0].partition(':')[0].upper()}, {len(agents)} seeds)" if agents else None
    groups = {**{label: [(system, spec)] for label, (system, spec) in BASELINES.items()},
              VALIDATED: [("papi", "validated-tlp")],
              **{f"PAPI rule, TLP {k}": [("papi", f"fixed-tlp:{k}")] for k in range(2, max_tlp + 1)},
              **({learned: [("papi", a) for a in agents]} if agents else {})}
    jobs = [(label, system, spec, rate, episodes, eval_seed, kwargs)
            for label, members in groups.items() for system, spec in members for rate in [*rates, 0.0]]
    cells = fanout.run_all(cell, jobs, num_cpus, address)
    saturation = {label: float(np.mean([c["saturation_rps"] for c in cells if c["label"] == label and "saturation_rps"
                                        in c])) for label in groups}
    curves: dict[str, list[dict]] = {
        label: [pooled(label, [c for c in cells if c["label"] == label and c.get("rate") == r]) for r in rates]
        for label in groups}
    fixed = ["PAPI rule", *(f"PAPI rule, TLP {k}" for k in range(2, max_tlp + 1))]
    best = []
    for i in range(len(rates)):  # least mean latency in hindsight, per rate
        label = min(fixed, key=lambda name, i=i: curves[name][i]["latency_mean_s"])
        best.append({**curves[label][i], "label": BEST_TLP, "chosen": label})
    curves[BEST_TLP] = best
    comparisons = []
    if learned:
        for i, r in enumerate(rates):
            agent = np.array(curves[learned][i]["episode_scores"])  # seeds x episodes
            row = {"agent": learned, "rate": r}
            for ref in ("PAPI rule", VALIDATED, BEST_TLP):
                ratio = agent / np.array(curves[ref][i]["episode_scores"])  # paired per episode
                row[f"vs {ref}"] = {"mean": float(ratio.mean()), **stats.iqm_ci(ratio),
                                    "p_improvement": stats.probability_of_improvement(
                                        agent, curves[ref][i]["episode_scores"])["p"]}
            comparisons.append(row)
    return {"env": SERVE, "env_kwargs": kwargs, "rates": rates, "episodes": episodes, "eval_seed": eval_seed,
            "agents": agents, "saturation_rps": saturation, "curves": curves, "learned_vs_rules": comparisons}


def _arrivals(kwargs: dict[str, Any]) -> str:
    if kwargs.get("arrival", "poisson") == "gamma":
        return f"bursty arrivals (gamma gaps, cv {kwargs.get('cv', 1.0):g})"
    return "Poisson arrivals"


def to_markdown(record: dict[str, Any]) -> str:
    kw = record["env_kwargs"]
    shown = [*BASELINES, VALIDATED, BEST_TLP, *(k for k in record["curves"] if k.startswith("learned"))]
    rows = []
    for label in shown:
        for c in record["curves"][label]:
            rows.append([label + (f" ({c['chosen'].removeprefix('PAPI rule').strip(', ') or 'TLP 1'})"
                                  if "chosen" in c else ""),
                         c["rate"], f"{c['ttft_p50_s'] * 1e3:.1f}", f"{c['ttft_p99_s'] * 1e3:.1f}",
                         f"{c['tpot_p50_s'] * 1e3:.2f}", f"{c['tpot_p99_s'] * 1e3:.2f}",
                         f"{c['latency_mean_s']:.2f}", f"{c['slo_attainment']:.3f}", f"{c['joules_per_token']:.3f}"])
    sat = [[label, f"{v:.2f}"] for label, v in record["saturation_rps"].items()]
    text = (f"# Serving: latency versus request rate ({kw.get('model', 'llama-65b')}, {_arrivals(kw)}, "
            f"{record['episodes']} held-out episodes of {kw['requests']} requests per point, the first "
            f"{kw['warmup']} unscored; drafts accepted with probability {kw.get('acceptance_rate')})\n\n"
            + markdown_table(["policy", "rate (req/s)", "TTFT p50 (ms)", "TTFT p99 (ms)", "TPOT p50 (ms)",
                              "TPOT p99 (ms)", "mean latency (s)", "SLO attainment", "J/token"], rows)
            + "\n## Saturation throughput (requests/s under overload)\n\n"
            + markdown_table(["policy", "saturation (req/s)"], sat))
    if record["learned_vs_rules"]:
        comp = [[c["agent"], c["rate"], stats.fmt_ci(c["vs PAPI rule"]), stats.fmt_ci(c[f"vs {VALIDATED}"]),
                 f"{c[f'vs {VALIDATED}']['p_improvement']:.2f}", stats.fmt_ci(c[f"vs {BEST_TLP}"])]
                for c in record["learned_vs_rules"]]
        text += ("\n## Learned agent vs rules (score = 1 / mean latency; paired per-episode ratio over seeds x "
                 "episodes, IQM [95% stratified-bootstrap CI]; P: probability of beating the validated TLP on an "
                 "episode)\n\n"
                 + markdown_table(["agent", "rate (req/s)", "vs PAPI rule (TLP 1)", "vs validated TLP",
                                   "P(> validated TLP)", "vs best fixed TLP (hindsight, a reference)"], comp))
    return text


def plot(record: dict[str, Any], path: Path) -> None:
    from matplotlib import ticker

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True)
    shown = [*BASELINES, VALIDATED, *(k for k in record["curves"] if k.startswith("learned"))]
    for ax, key, title in zip(axes.flat, ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s"),
                              ("TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"), strict=True):
        for label in shown:
            curve = record["curves"][label]
            sat = record["saturation_rps"].get(label)
            name = label if sat is None else f"{label} (sat. {sat:.1f} req/s)"
            line, = ax.plot([c["rate"] for c in curve], [c[key] * 1e3 for c in curve], marker=".", label=name)
            if all(key + "_ci" in c for c in curve):  # 95% CI, episodes resampled
                ax.fill_between([c["rate"] for c in curve], [c[key + "_ci"][0] * 1e3 for c in curve],
                                [c[key + "_ci"][1] * 1e3 for c in curve], color=line.get_color(), alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # plain numbers, not 3x10^1
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "235" else ""))
        saturation = record["saturation_rps"].get("PAPI rule")
        if saturation:  # beyond it the queues grow for the whole episode: a transient, not a steady state
            ax.axvline(saturation, color="0.5", ls=":", lw=1.0)
        ax.set_title(title)
        ax.set_ylabel("ms")
    for ax in axes[1]:
        ax.set_xlabel("request rate (requests/s); dotted: PAPI rule's saturation")
    axes[0, 0].legend(fontsize=7)
    kw = record["env_kwargs"]
    fig.suptitle(f"PapiServe-v0: {kw.get('model', 'llama-65b')}, {_arrivals(kw)}, {record['episodes']} episodes "
                 f"per point (bands: 95% CI, episodes resampled); fixed TLP chosen on validation episodes per rate")
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Latency versus request rate on PapiServe-v0.")
    add_training_arguments(parser, "PPO on PapiServe-v0 (its config block in experiments/configs/ppo.yaml) into "
                           "--out/runs, as Ray tasks, and add their best models")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in DEFAULT_RATES),
                        help="requests/s, comma-separated")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--acceptance-rate", type=float, default=0.7)
    parser.add_argument("--max-tlp", type=int, default=4)
    parser.add_argument("--arrival", choices=("poisson", "gamma"), default="poisson",
                        help="inter-arrival gaps: exponential, or gamma with coefficient of variation --cv (bursts)")
    parser.add_argument("--cv", type=float, default=1.0, help="coefficient of variation of the gamma gaps")
    parser.add_argument("--out", type=Path, default=Path("results/serve"))
    fanout.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        try:
            rates = [float(r) for r in args.rates.split(",") if r.strip()]
        except ValueError:
            rates = []
        if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
            raise UsageError(f"--rates must be positive, finite numbers of requests/s, got {args.rates!r}")
        finite(args.acceptance_rate, "--acceptance-rate")
        finite(args.cv, "--cv")
        for flag, value in (("--episodes", args.episodes), ("--requests", args.requests), ("--max-tlp", args.max_tlp)):
            positive(value, flag)
        if not 0 <= args.warmup < args.requests:
            raise UsageError(f"--warmup must be in [0, --requests), got {args.warmup}")
        check_output_dir(args.out)
        if not args.cv > 0:
            raise UsageError(f"--cv must be > 0, got {args.cv}")
        kwargs = {"requests": args.requests, "warmup": args.warmup, "acceptance_rate": args.acceptance_rate,
                  "max_tlp": args.max_tlp, "reward": "latency", "arrival": args.arrival, "cv": args.cv}
        papi_env.PapiServeEnv(**kwargs)  # bad settings fail here, before any work
        check_training_arguments(args)
        jobs = [TrainJob("ppo", SERVE, seed, str(args.out / "runs"), args.total_timesteps,
                         resume="continue" if args.reuse else "overwrite") for seed in range(args.train_seeds)]
        check_jobs(jobs)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if jobs:
        args.agent += [f"ppo:{run / 'best_model.zip'}" for run in run_jobs(jobs, args.num_cpus, args.address)]
    record = run(args.agent, rates, args.episodes, args.eval_seed, kwargs, args.num_cpus, args.address)
    publish(args.out, "serve", record, to_markdown(record), plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
