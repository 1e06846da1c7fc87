"""Beyond the paper: every variant x objective, rules vs oracle vs learned agents over seeds.

    python -m experiments.beyond --seeds 3 --episodes 20 --out results/beyond      (`make beyond`)

For each (variant, objective) cell: train ``--seeds`` agents (PPO; config blocks in
experiments/configs/ppo.yaml with ``reward`` set to the objective), then evaluate every rule of the
variant, the oracle and each trained agent on the same held-out episodes (experiments.evaluate).
Writes, under ``--out``:

- ``<variant>/<objective>/eval.json`` and ``eval.md``: the full paired table of that cell;
- ``summary.json`` and ``summary.md``: one row per cell: the best rule-based policy, the oracle
  and the learned agents (mean +- std over seeds of the paired score ratio to the best rule, and
  the worst seed), and to PAPI's threshold rule;
- ``curves_<variant>.png``: validation score / threshold score over training, per objective
  (mean over seeds, band = min..max);
- TensorBoard logs of every run in ``runs/``.

Training jobs run as Ray tasks (experiments.fanout), one CPU and one torch thread each: on this
machine by default (``--num-cpus``), on a cluster with ``--address``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import numpy as np

import papi_env
from agents.learned import ALGOS
from experiments import evaluate, fanout, stats
from experiments.callbacks import history_ratio
from experiments.cli import check_output_dir, parse_env_kwargs, positive
from experiments.io import markdown_table, save_figure, write_json, write_text
from experiments.jobs import TrainJob, check_jobs, run_jobs
from experiments.plotting import learning_curve, pyplot, ratio_axis

VARIANTS = {name.split("/")[1].removesuffix("-v0"): name for name in papi_env.ENV_IDS}
OBJECTIVES = papi_env.REWARDS


def summarise_cell(result: dict[str, Any], learned: list[str]) -> dict[str, Any]:
    """One summary row of an evaluated cell."""
    p = result["policies"]
    best = result["best_rule"]
    ratios = np.array([p[name]["ratio_vs_best_rule"] for name in learned])
    thr = np.array([p[name]["ratio_vs_threshold"] for name in learned])
    best_scores = np.array(p[best]["episode_scores"])
    per_episode = np.array([np.array(p[name]["episode_scores"]) / best_scores for name in learned])  # seeds x eps
    planner = p.get("greedy-ema")
    return {
        "env": result["env"], "objective": result["objective"], "best_rule": best,
        "best_rule_vs_threshold": p[best]["ratio_vs_threshold"],
        "oracle_vs_best_rule": p["oracle"]["ratio_vs_best_rule"],
        "planner_vs_best_rule": p["greedy-ema"]["ratio_vs_best_rule"] if "greedy-ema" in p else None,
        "learned_vs_best_rule_mean": float(ratios.mean()), "learned_vs_best_rule_std": float(ratios.std()),
        "learned_vs_best_rule_min": float(ratios.min()), "learned_vs_best_rule_max": float(ratios.max()),
        "learned_vs_threshold_mean": float(thr.mean()), "learned_vs_threshold_min": float(thr.min()),
        "learned_vs_best_rule_iqm": stats.iqm_ci(per_episode),
        "learned_p_improvement": stats.probability_of_improvement(
            [p[name]["episode_scores"] for name in learned], best_scores),
        "oracle_vs_best_rule_iqm": p["oracle"]["iqm_vs_best_rule"],
        "planner_vs_best_rule_iqm": planner["iqm_vs_best_rule"] if planner else None,
        "seeds": len(learned), "episodes": result["episodes"],
        "total_timesteps": max(json.loads((Path(n.partition(":")[2]).parent / "run.json").read_text())
                               ["total_timesteps"] for n in learned),
    }


def summary_markdown(rows: list[dict[str, Any]], algo: str, total: int) -> str:
    table = []
    for r in rows:
        planner = "-" if r["planner_vs_best_rule"] is None else f"{r['planner_vs_best_rule']:.3f}"
        table.append([
            r["env"].split("/")[1], r["objective"], r.get("total_timesteps", "?"), r["best_rule"],
            f"{r['best_rule_vs_threshold']:.3f}",
            f"{r['oracle_vs_best_rule']:.3f}", planner,
            f"{r['learned_vs_best_rule_mean']:.3f} ± {r['learned_vs_best_rule_std']:.3f}",
            stats.fmt_ci(r["learned_vs_best_rule_iqm"]) if "learned_vs_best_rule_iqm" in r else "-",
            f"{r['learned_p_improvement']['p']:.2f}" if "learned_p_improvement" in r else "-",
            f"{r['learned_vs_best_rule_min']:.3f}", f"{r['learned_vs_threshold_min']:.3f}",
        ])
    n = rows[0]["seeds"] if rows else 0
    episodes = rows[0]["episodes"] if rows else 0
    return (f"# Beyond the paper: {algo.upper()}, {n} seeds per cell, "
            f"{episodes} paired held-out episodes\n\nScores are the objective per token, higher is better; every "
            "ratio is paired per episode. 'best rule' is the best rule-based policy of the cell (agents.policies); "
            "'planner' (greedy-ema) evaluates the cost model every iteration. Oracle and planner: mean over "
            f"episodes. {algo}: mean ± std over seeds of each seed's mean over episodes; IQM [95% CI] over seeds x "
            "episodes (rliable, stratified bootstrap); P(> best rule): probability that a trained agent beats "
            "the best rule on a random episode.\n\n"
            + markdown_table(["variant", "objective", "steps", "best rule", "best rule / threshold",
                              "oracle / best rule", "planner / best rule", f"{algo} / best rule (mean ± std)",
                              f"{algo} / best rule IQM [95% CI]", "P(> best rule)",
                              f"{algo} worst seed / best rule", f"{algo} worst seed / threshold"], table))


def plot_curves(variant: str, curves: dict[str, list[list[dict]]], path: Path, algo: str = "ppo",
                best_rule: dict[str, tuple[str, float]] | None = None, model: str = "LLaMA-65B") -> None:
    """Validation curves per objective (IQM over seeds with its 95% bootstrap CI), against PAPI's
    rule (1.0) and, dotted, the level of each objective's best rule on the held-out episodes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    low, high = 1.0, 1.0
    for objective, runs in curves.items():
        steps = [h["timesteps"] for h in runs[0]]
        n = min(len(r) for r in runs)
        values = np.array([[history_ratio(h) for h in r[:n]] for r in runs])
        line = learning_curve(ax, steps[:n], values, f"{objective}: {algo.upper()}")
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        if best_rule and objective in best_rule and best_rule[objective][0] != "threshold":
            name, level = best_rule[objective]
            ax.axhline(level, color=line.get_color(), ls=":", lw=1.0, label=f"{objective}: best rule ({name})")
            high = max(high, level)
    ratio_axis(ax, low, high, "validation score / PAPI's threshold rule (dashed: 1)")
    ax.set_xlabel("environment steps")
    seeds = len(next(iter(curves.values())))
    ax.set_title(f"{variant} ({model}): {algo.upper()}, IQM and 95% CI over {seeds} seeds")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)  # below the axes: no curve hidden
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rules vs oracle vs learned agents on every variant and objective.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help=f"comma-separated, of {list(OBJECTIVES)}")
    parser.add_argument("--algo", default="ppo", choices=ALGOS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: each config's n_timesteps")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=0,
                        help="held-out episode set: seeds 1,000,000 + 1000 x this + i (experiments.evaluate)")
    fanout.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("results/beyond"))
    parser.add_argument("--reuse", action="store_true", help="keep finished runs in --out and continue killed "
                        "ones from their checkpoints (default: train every run afresh)")
    parser.add_argument("--model", choices=("best", "final"), default="best",
                        help="which model of each run to evaluate: best on the validation episodes, or the last")
    parser.add_argument("--env-kwargs", default="{}", help="JSON dict of env keyword arguments for every cell "
                        "(e.g. a latency target)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    bad = [v for v in variants if v not in VARIANTS] + [o for o in objectives if o not in OBJECTIVES]
    if bad or args.seeds < 1 or args.episodes < 1:
        parser.error(f"unknown variant/objective {bad}; allowed variants {list(VARIANTS)}, objectives "
                     f"{list(OBJECTIVES)}; --seeds and --episodes must be >= 1")
    try:
        if args.num_cpus is not None:
            positive(args.num_cpus, "--num-cpus")
        if args.total_timesteps is not None:
            positive(args.total_timesteps, "--total-timesteps")
        check_output_dir(args.out)
        extra = parse_env_kwargs(args.env_kwargs)
        jobs = [TrainJob(args.algo, VARIANTS[v], s, str(args.out / "runs"), args.total_timesteps,
                         env_kwargs={**extra, "reward": o}, label=o, resume="continue" if args.reuse else "overwrite")
                for v in variants for o in objectives for s in range(args.seeds)]
        check_jobs(jobs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs = run_jobs(jobs, args.num_cpus, args.address)
    run_of = {(j.env_id, j.label, j.seed): r for j, r in zip(jobs, runs, strict=True)}
    config_of = {(j.env_id, j.label): j.config() for j in jobs}
    rows = []
    for v in variants:
        env_id, curves, best_levels = VARIANTS[v], {}, {}
        for o in objectives:
            kwargs = config_of[(env_id, o)]["env_kwargs"]
            learned = [f"{args.algo}:{run_of[(env_id, o, s)]}/{args.model}_model.zip" for s in range(args.seeds)]
            result = evaluate.evaluate(env_id, None, args.episodes, args.eval_seed, kwargs, extra_policies=learned,
                                       num_cpus=args.num_cpus, address=args.address, parallel=True)
            cell = args.out / v / o
            write_json(cell / "eval.json", result)
            write_text(cell / "eval.md", evaluate.to_markdown(result))
            rows.append(summarise_cell(result, learned))
            best_levels[o] = (result["best_rule"], result["policies"][result["best_rule"]]["ratio_vs_threshold"])
            curves[o] = [json.loads((Path(run_of[(env_id, o, s)]) / "evaluations.json").read_text())
                         for s in range(args.seeds)]
        for o in OBJECTIVES:  # the variant's other objectives trained earlier into the same --out stay in its plot
            earlier = [TrainJob(args.algo, env_id, s, str(args.out / "runs"), label=o).run_dir / "evaluations.json"
                       for s in range(args.seeds)]
            if o not in curves and all(e.exists() for e in earlier):
                curves[o] = [json.loads(e.read_text()) for e in earlier]
        model = str(extra.get("model", "llama-65b"))
        plot_curves(v, {o: curves[o] for o in OBJECTIVES if o in curves}, args.out / f"curves_{v}.png", args.algo,
                    best_levels, model)
    previous = args.out / "summary.json"
    if previous.exists():  # keep the other cells of an earlier run; this run's cells replace theirs
        done = {(r["env"], r["objective"]) for r in rows}
        kept = [r for r in json.loads(previous.read_text()) if (r["env"], r["objective"]) not in done]
        order = {(VARIANTS[v], o): i for i, (v, o) in enumerate((v, o) for v in VARIANTS for o in OBJECTIVES)}
        rows = sorted(kept + rows, key=lambda r: order.get((r["env"], r["objective"]), len(order)))
    write_json(args.out / "summary.json", rows)
    md = summary_markdown(rows, args.algo, args.total_timesteps)
    write_text(args.out / "summary.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
