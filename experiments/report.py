"""Train K seeds of an algorithm, evaluate each on held-out episodes, report mean +- spread.

    python -m experiments.report --algo ppo --seeds 3 --out results/report

Writes report.json, report.md (ratio to the threshold and to the oracle, per seed and mean +-
std) and curves.png (validation speedup vs threshold over training, one line per seed, with the
threshold's level drawn at 1). The seeds train as Ray tasks, side by side (experiments.fanout:
``--num-cpus`` locally, ``--address`` on a cluster); evaluation follows in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import numpy as np

import papi_env
from agents.learned import ALGOS
from experiments import evaluate, fanout, stats
from experiments.callbacks import history_ratio
from experiments.cli import check_output_dir, positive
from experiments.io import markdown_table, save_figure, write_json, write_text
from experiments.jobs import TrainJob, check_jobs, run_jobs
from experiments.plotting import learning_curve, pyplot, ratio_axis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Multi-seed training report.")
    parser.add_argument("--algo", choices=ALGOS, default="ppo")
    parser.add_argument("--env", default=papi_env.DEFAULT_ENV_ID)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("results/report"))
    fanout.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        for flag, value in (("--seeds", args.seeds), ("--episodes", args.episodes), ("--num-cpus", args.num_cpus)):
            if value is not None:
                positive(value, flag)
        if args.total_timesteps is not None:
            positive(args.total_timesteps, "--total-timesteps")
        check_output_dir(args.out)
        jobs = [TrainJob(args.algo, args.env, seed, str(args.out / "runs"), args.total_timesteps, resume="overwrite")
                for seed in range(args.seeds)]
        check_jobs(jobs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = jobs[0].config()
    total = cfg["n_timesteps"]
    per_seed, curves, episode_ratios, threshold_scores, agent_scores = [], {}, [], None, []
    run_dirs = run_jobs(jobs, args.num_cpus, args.address)
    for seed, run_dir in zip(range(args.seeds), run_dirs, strict=True):
        name = f"{args.algo}:{run_dir / 'best_model.zip'}"
        res = evaluate.evaluate(args.env, ["threshold", "oracle", name], args.episodes, 0, cfg["env_kwargs"],
                                intervals=False)  # ratios of means; the report bootstraps its own
        p = res["policies"]
        per_seed.append({"seed": seed, "ratio_vs_threshold": p[name]["ratio_vs_threshold"],
                         "ratio_vs_oracle": p[name]["tokens_per_s"] / p["oracle"]["tokens_per_s"],
                         "worst_episode_vs_threshold": p[name]["ratio_vs_threshold_min"]})
        curves[seed] = json.loads((run_dir / "evaluations.json").read_text())
        threshold_scores = np.array(p["threshold"]["episode_scores"])  # the same episodes every seed
        agent_scores.append(p[name]["episode_scores"])
        episode_ratios.append(np.array(p[name]["episode_scores"]) / threshold_scores)
    thr = np.array([s["ratio_vs_threshold"] for s in per_seed])
    orc = np.array([s["ratio_vs_oracle"] for s in per_seed])
    summary = {"algo": args.algo, "env": args.env, "seeds": args.seeds, "total_timesteps": total,
               "episodes": args.episodes, "ratio_vs_threshold_mean": float(thr.mean()),
               "ratio_vs_threshold_std": float(thr.std()), "ratio_vs_threshold_min": float(thr.min()),
               "ratio_vs_oracle_mean": float(orc.mean()), "ratio_vs_oracle_std": float(orc.std()),
               "ratio_vs_threshold_iqm": stats.iqm_ci(np.array(episode_ratios)),
               "p_improvement_vs_threshold": stats.probability_of_improvement(agent_scores, threshold_scores),
               "per_seed": per_seed}
    write_json(args.out / "report.json", summary)
    rows = [[s["seed"], s["ratio_vs_threshold"], s["ratio_vs_oracle"], s["worst_episode_vs_threshold"]]
            for s in per_seed]
    rows.append(["mean ± std", f"{thr.mean():.4f} ± {thr.std():.4f}", f"{orc.mean():.4f} ± {orc.std():.4f}", ""])
    iqm, pi = summary["ratio_vs_threshold_iqm"], summary["p_improvement_vs_threshold"]
    md = (f"# {args.algo} on {args.env}: {args.seeds} seeds x {total} steps, {args.episodes} held-out episodes\n\n"
          + markdown_table(["seed", "score vs threshold", "tokens/s vs oracle", "worst episode vs threshold"],
                           rows)
          + f"\nPer seed: mean over episodes of the paired ratio; mean ± std: over seeds. Over seeds x episodes: "
          f"IQM {stats.fmt_ci(iqm, digits=4)} (95% stratified-bootstrap CI, rliable); P(agent > threshold) "
          f"{pi['p']:.2f} [{pi['ci_low']:.2f}, {pi['ci_high']:.2f}].\n")
    write_text(args.out / "report.md", md)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    histories = list(curves.values())
    n = min(len(h) for h in histories)
    values = np.array([[history_ratio(e) for e in h[:n]] for h in histories])
    learning_curve(ax, [e["timesteps"] for e in histories[0][:n]], values, f"{args.algo.upper()}")
    ratio_axis(ax, float(values.min()), float(values.max()), "validation score / PAPI's threshold rule (dashed: 1)")
    ax.set_xlabel("environment steps")
    ax.set_title(f"{args.algo.upper()} on {args.env.split('/')[-1]}: IQM and 95% CI over {len(histories)} seeds")
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "curves.png")
    plt.close(fig)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
