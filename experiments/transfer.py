"""Transfer: agents trained on a population of systems and models, evaluated on ones they never saw.

    python -m experiments.transfer --seeds 3 --out results/transfer          (`make transfer`)

For each variant x objective, ``--seeds`` PPO agents train on a population of
``--train-size`` (system, model) pairs drawn by hardware.population (training split; one pair per
episode, ``hardware_features=True`` so the observation describes the episode's hardware). Each is
then evaluated zero-shot on every held-out system: the named targets (GPT-3 175B on PAPI with H100
GPUs and the two hand-written systems of experiments/configs/systems/) and ``--held-out-size``
members of the held-out split (H100-class GPUs, GPT-3 175B-class models: never drawn in training),
against every rule of the variant (PAPI's rule recalibrated for that system included), the planner
(spec) and the oracle, on the same ``--episodes`` held-out episodes (experiments.evaluate).

Writes ``transfer.json``, ``transfer.md`` (a row per system: each policy's ratio to PAPI's
recalibrated rule and to the best rule, the agents' IQM with its 95% CI, and their GPU share and
mean TLP beside the oracle's, which show what an agent that falls short got wrong) and ``transfer.png``
(the zero-shot ratios per system with CIs) under ``--out``, and the training runs (TensorBoard) under ``--out/runs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import numpy as np

from experiments import evaluate, stats
from experiments.cli import UsageError, check_output_dir, positive
from experiments.io import markdown_table, publish
from experiments.jobs import TrainJob, check_jobs, run_jobs
from hardware.population import Member, named_targets, population

VARIANTS = {"kernel": "papi_env/PapiKernelSchedule-v0", "spec": "papi_env/PapiSpecSchedule-v0"}
OBJECTIVES = ("latency", "edp")
TARGETS = {"kernel": ("threshold", 0.98), "spec": ("best rule", 1.0)}  # the zero-shot targets
PLANNERS = {"spec": ["greedy-ema"]}


def train_jobs(args: argparse.Namespace, train: list[Member]) -> list[TrainJob]:
    pairs = [[m.system, m.model] for m in train]
    return [TrainJob("ppo", VARIANTS[v], seed, str(args.out / "runs"), args.total_timesteps,
                     env_kwargs={"population": pairs, "hardware_features": True, "reward": o}, label=f"{v}_{o}",
                     resume="continue" if args.reuse else "overwrite")
            for v in args.variants for o in args.objectives for seed in range(args.seeds)]


def evaluate_cell(variant: str, objective: str, member: Member, agents: list[str], episodes: int,
                  base_kwargs: dict[str, Any], num_cpus: int | None, address: str | None) -> dict[str, Any]:
    """Every rule, the planner, the oracle and the agents on one held-out system; the row."""
    env_id = VARIANTS[variant]
    kwargs = {**base_kwargs, "system": member.system, "model": member.model, "hardware_features": True,
              "reward": objective}
    result = evaluate.evaluate(env_id, None, episodes, 0, kwargs, extra_policies=[*PLANNERS.get(variant, []),
                                                                                   "oracle", *agents],
                               num_cpus=num_cpus, address=address, parallel=True)
    p, best = result["policies"], result["best_rule"]
    scores = np.array([p[a]["episode_scores"] for a in agents])
    per_episode = scores / np.array(p[best]["episode_scores"])
    to_threshold = scores / np.array(p[result["reference"]]["episode_scores"])
    row = {"variant": variant, "objective": objective, "system": member.name, "best_rule": best,
           "best_rule_vs_threshold": p[best]["ratio_vs_threshold"],
           "oracle_vs_threshold": p["oracle"]["ratio_vs_threshold"],
           "planner_vs_threshold": p["greedy-ema"]["ratio_vs_threshold"] if "greedy-ema" in p else None,
           "agents_vs_threshold": [p[a]["ratio_vs_threshold"] for a in agents],
           "agents_vs_best_rule": [p[a]["ratio_vs_best_rule"] for a in agents],
           "agents_vs_threshold_iqm": stats.iqm_ci(to_threshold), "agents_vs_best_rule_iqm": stats.iqm_ci(per_episode),
           "agent_gpu_share": float(np.mean([p[a]["gpu_share"] for a in agents])),
           "oracle_gpu_share": p["oracle"]["gpu_share"],
           "agent_mean_tlp": float(np.mean([p[a]["mean_tlp"] for a in agents])),
           "oracle_mean_tlp": p["oracle"]["mean_tlp"]}
    reference, goal = TARGETS[variant]
    measured = np.mean(row["agents_vs_threshold"] if reference == "threshold" else row["agents_vs_best_rule"])
    row["target"] = f">= {goal} x {reference}"
    row["target_met"] = bool(measured >= goal)
    if variant == "kernel" and not row["target_met"]:  # what the agents got wrong, against the crossover
        row["placement_vs_crossover"] = placement_vs_crossover(member, objective, agents, episodes, base_kwargs)
    return row


def placement_vs_crossover(member: Member, objective: str, agents: list[str], episodes: int,
                           base_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Where a kernel-variant agent's placement departs from the crossover: on the held-out
    episodes, each policy's share of FC kernels on the GPUs over the iterations whose RLP x TLP is
    below PAPI's calibrated crossover alpha (for the objective) and over those at or above it, for
    each agent (per seed), the oracle and PAPI's rule. An agent that crosses over too early puts
    FC on the GPUs below alpha; one that crosses too late keeps it on FC-PIM above."""
    import gymnasium as gym

    from agents.policies import make_policy
    from papi_env.schedule_env import decode_parallelism

    env = gym.make(VARIANTS["kernel"], **base_kwargs, system=member.system, model=member.model,
                   hardware_features=True, reward=objective)
    alpha = env.unwrapped.alpha()
    shares = {}
    for name in ["threshold", "oracle", *agents]:
        policy = make_policy(name, env=env)
        gpu, steps = np.zeros(2), np.zeros(2)

        def tally(obs: np.ndarray, info: dict[str, Any], gpu: np.ndarray = gpu, steps: np.ndarray = steps) -> None:
            rlp, tlp = decode_parallelism(obs)
            above = int(rlp * tlp >= alpha)
            gpu[above] += info["gpu_share"]
            steps[above] += 1

        for seed in evaluate.eval_seeds(episodes, 0):
            evaluate.run_episode(env, policy, seed, on_step=tally)
        label = "PAPI's rule" if name == "threshold" else name if name == "oracle" else f"PPO seed {agents.index(name)}"
        shares[label] = [float(g / n) if n else None for g, n in zip(gpu, steps, strict=True)]
    env.close()
    return {"alpha": int(alpha), "iterations_below_alpha": float(steps[0] / steps.sum()), "fc_gpu_share": shares}


FEW_SHOT_EVALS = 4  # [D] validations along a fine-tuning run: the points of a few-shot curve


def slug(name: str) -> str:
    """A held-out system's name as part of a run name (no spaces)."""
    return name.replace(" ", "-")


def few_shot_jobs(args: argparse.Namespace, cells: dict[str, list[tuple[TrainJob, Path]]],
                  targets: list[Member]) -> list[TrainJob]:
    """Fine-tuning runs: each trained agent (its best model) on each named held-out target alone,
    ``--few-shot`` steps, validated FEW_SHOT_EVALS times against PAPI's rule recalibrated for it."""
    steps = args.few_shot
    jobs = []
    for label, members in cells.items():
        variant, objective = label.split("_")
        for target in targets:
            for job, run in members:
                base = {k: v for k, v in job.config()["env_kwargs"].items() if k != "population"}
                jobs.append(TrainJob(
                    "ppo", VARIANTS[variant], job.seed, str(args.out / "few_shot"), steps,
                    env_kwargs={**base, "system": target.system, "model": target.model, "reward": objective},
                    overrides={"init_model": str(run / "best_model.zip"),
                               "eval_freq": max(steps // FEW_SHOT_EVALS, 1),
                               "checkpoint_freq": steps}, label=f"{label}_{slug(target.name)}",
                    resume="continue" if args.reuse else "overwrite"))
    return jobs


def few_shot_curves(jobs: list[TrainJob], runs: list[Path]) -> list[dict[str, Any]]:
    """Per variant x objective x target: the agents' validation score / PAPI's recalibrated rule
    after each number of fine-tuning steps (mean and spread over seeds)."""
    import json

    by_label: dict[str, list[list[dict[str, Any]]]] = {}
    for job, run in zip(jobs, runs, strict=True):
        by_label.setdefault(job.label, []).append(json.loads((run / "evaluations.json").read_text()))
    curves = []
    for label, histories in by_label.items():
        steps = [e["timesteps"] for e in histories[0]]
        values = np.array([[e["score_vs_threshold"] for e in h[:len(steps)]] for h in histories])
        curves.append({"label": label, "steps": steps, "mean": values.mean(axis=0).tolist(),
                       "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()})
    return curves


def plot_few_shot(curves: list[dict[str, Any]], zero_shot: dict[str, float], path: Path) -> None:
    """One panel per variant x objective: each target's score / PAPI's rule against fine-tuning
    steps (mean over seeds, band min..max), its zero-shot value at 0, the ratio-1 line."""
    from experiments.io import save_figure
    from experiments.plotting import pyplot

    plt = pyplot()
    panels = sorted({"_".join(c["label"].split("_")[:2]) for c in curves})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for c in (c for c in curves if c["label"].startswith(panel + "_")):
            target = c["label"][len(panel) + 1:]
            xs = [0, *c["steps"]]
            start = zero_shot.get(c["label"], np.nan)
            line, = ax.plot(xs, [start, *c["mean"]], marker=".", label=target)
            ax.fill_between(c["steps"], c["min"], c["max"], color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_title(panel.replace("_", ", "))
        ax.set_xlabel("fine-tuning steps on the target")
        ax.set_ylabel("score / PAPI's recalibrated rule")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Few-shot: population-trained PPO fine-tuned on each held-out target (band: seeds' range; "
                 "0 steps: zero-shot on the evaluation episodes)")
    save_figure(fig, path)
    plt.close(fig)


def plot_zero_shot(record: dict[str, Any], path: Path) -> None:
    """One panel per variant x objective: on each held-out system, the agents' IQM with its 95% CI,
    the best rule, the planner and the oracle, all as ratios to PAPI's rule recalibrated for that
    system (1, dashed); the kernel variant's 0.98 target dotted."""
    from experiments.io import save_figure
    from experiments.plotting import pyplot, ratio_axis

    plt = pyplot()
    rows = record["rows"]
    panels = list(dict.fromkeys((r["variant"], r["objective"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, (variant, objective) in zip(axes[0], panels, strict=True):
        cell = [r for r in rows if (r["variant"], r["objective"]) == (variant, objective)]
        x = np.arange(len(cell))
        iqm = [r["agents_vs_threshold_iqm"] for r in cell]
        ax.errorbar(x - 0.15, [c["iqm"] for c in iqm], yerr=[[c["iqm"] - c["ci_low"] for c in iqm],
                                                          [c["ci_high"] - c["iqm"] for c in iqm]],
                    fmt="o", capsize=3, color="C0", label="PPO (IQM, 95% CI)")
        ax.plot(x, [r["best_rule_vs_threshold"] for r in cell], "s", color="C1", label="best rule")
        if any(r["planner_vs_threshold"] is not None for r in cell):
            ax.plot(x, [np.nan if r["planner_vs_threshold"] is None else r["planner_vs_threshold"] for r in cell],
                    "^", color="C2", label="planner")
        ax.plot(x + 0.15, [r["oracle_vs_threshold"] for r in cell], "*", color="C3", label="oracle")
        values = [c["ci_low"] for c in iqm] + [c["ci_high"] for c in iqm] + [r["oracle_vs_threshold"] for r in cell]
        ratio_axis(ax, min(values), max(values), "score / PAPI's recalibrated rule")
        if variant == "kernel":
            ax.axhline(TARGETS["kernel"][1], color="0.4", ls=":", lw=0.8)
        ax.set_xticks(x, [r["system"].replace(" on ", "\non ") for r in cell], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{variant}, {objective}")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8,
               bbox_to_anchor=(0.5, -0.2))
    fig.suptitle(f"Zero-shot on held-out systems: PPO trained on {record['train_size']} drawn systems, "
                 f"{record['seeds']} seeds, {record['episodes']} paired episodes each")
    save_figure(fig, path)
    plt.close(fig)


def to_markdown(rows: list[dict[str, Any]], seeds: int, steps: int | None, episodes: int, train_size: int) -> str:
    table = []
    for r in rows:
        iqm = r["agents_vs_threshold_iqm"] if r["variant"] == "kernel" else r["agents_vs_best_rule_iqm"]
        table.append([r["variant"], r["objective"], r["system"], r["best_rule"], f"{r['best_rule_vs_threshold']:.3f}",
                      f"{r['oracle_vs_threshold']:.3f}",
                      "-" if r["planner_vs_threshold"] is None else f"{r['planner_vs_threshold']:.3f}",
                      f"{np.mean(r['agents_vs_threshold']):.3f} ± {np.std(r['agents_vs_threshold']):.3f}",
                      f"{np.mean(r['agents_vs_best_rule']):.3f} ± {np.std(r['agents_vs_best_rule']):.3f}",
                      stats.fmt_ci(iqm, digits=3), f"{r['agent_gpu_share']:.2f} / {r['oracle_gpu_share']:.2f}",
                      f"{r['agent_mean_tlp']:.2f} / {r['oracle_mean_tlp']:.2f}",
                      f"{r['target']}: {'met' if r['target_met'] else '**missed**'}"])
    return (f"# Zero-shot transfer: PPO trained on {train_size} drawn systems and models, {seeds} seeds, "
            f"{steps or 'the config'} steps; {episodes} paired held-out episodes per system\n\n"
            "Ratios of the episode score (paired per episode; PAPI's rule recalibrated for each system). "
            "PPO: mean ± std over seeds; IQM [95% CI] over seeds x episodes against the target's reference "
            "(kernel: PAPI's rule; spec: the best rule). GPU share and mean TLP: the agents' / the oracle's.\n\n"
            + markdown_table(["variant", "objective", "system", "best rule", "best rule / PAPI", "oracle / PAPI",
                              "planner / PAPI", "PPO / PAPI", "PPO / best rule", "PPO IQM [95% CI]",
                              "GPU share PPO / oracle", "mean TLP PPO / oracle", "target"], table)
            + placement_markdown(rows))


def placement_markdown(rows: list[dict[str, Any]]) -> str:
    """The placement-versus-crossover table of the kernel rows that miss their target ('' if none)."""
    missed = [r for r in rows if "placement_vs_crossover" in r]
    if not missed:
        return ""
    lines = []
    for r in missed:
        d = r["placement_vs_crossover"]
        for policy, (below, above) in d["fc_gpu_share"].items():
            lines.append([f"{r['objective']}, {r['system']}", d["alpha"], f"{d['iterations_below_alpha']:.2f}", policy,
                          "-" if below is None else f"{below:.2f}", "-" if above is None else f"{above:.2f}"])
    return ("\n\n## Where the kernel agents fall short: FC on the GPUs below and above PAPI's crossover\n\n"
            "Share of FC kernels on the GPUs over the iterations whose RLP x TLP is below the system's "
            "calibrated alpha, and over those at or above it (same episodes).\n\n"
            + markdown_table(["cell", "alpha", "iterations below alpha", "policy", "FC on GPUs below alpha",
                              "at or above"], lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train on a population of systems, evaluate on held-out ones.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated objectives")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: each config's n_timesteps")
    parser.add_argument("--train-size", type=int, default=32, help="systems and models drawn for training")
    parser.add_argument("--held-out-size", type=int, default=2, help="held-out members drawn besides the named")
    parser.add_argument("--population-seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/transfer"))
    parser.add_argument("--reuse", action="store_true", help="keep finished runs, continue killed ones")
    parser.add_argument("--few-shot", type=int, default=0, metavar="STEPS",
                        help="then fine-tune every agent on each named target for STEPS steps (few-shot curves)")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--address", default=None)
    args = parser.parse_args(argv)
    try:
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        args.objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
        bad = [v for v in args.variants if v not in VARIANTS] + [o for o in args.objectives if o not in OBJECTIVES]
        if bad or not args.variants or not args.objectives:
            raise UsageError(f"unknown or missing {bad}; variants {list(VARIANTS)}, objectives {list(OBJECTIVES)}")
        for flag, value in (("--seeds", args.seeds), ("--train-size", args.train_size),
                            ("--episodes", args.episodes)):
            positive(value, flag)
        if args.held_out_size < 0:
            raise UsageError(f"--held-out-size must be >= 0, got {args.held_out_size}")
        if args.total_timesteps is not None:
            positive(args.total_timesteps, "--total-timesteps")
        if args.num_cpus is not None:
            positive(args.num_cpus, "--num-cpus")
        if args.few_shot < 0:
            raise UsageError(f"--few-shot must be >= 0 steps, got {args.few_shot}")
        check_output_dir(args.out)
        train = population(args.population_seed, args.train_size, "train")
        held_out = named_targets() + (population(args.population_seed, args.held_out_size, "held_out")
                                      if args.held_out_size else [])
        jobs = train_jobs(args, train)
        check_jobs(jobs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs = run_jobs(jobs, args.num_cpus, args.address)
    rows = []
    for v in args.variants:
        for o in args.objectives:
            cell_jobs = [(j, r) for j, r in zip(jobs, runs, strict=True) if j.label == f"{v}_{o}"]
            agents = [f"ppo:{r}/best_model.zip" for _, r in cell_jobs]
            base = {k: val for k, val in cell_jobs[0][0].config()["env_kwargs"].items()
                    if k not in ("population", "hardware_features", "reward")}
            for member in held_out:
                rows.append(evaluate_cell(v, o, member, agents, args.episodes, base, args.num_cpus, args.address))
    record = {"seeds": args.seeds, "total_timesteps": args.total_timesteps, "train_size": args.train_size,
              "population_seed": args.population_seed, "episodes": args.episodes,
              "held_out": [{"name": m.name, "system": m.system, "model": m.model} for m in held_out], "rows": rows}
    md = to_markdown(rows, args.seeds, args.total_timesteps, args.episodes, args.train_size)
    if args.few_shot:
        cells = {f"{v}_{o}": [(j, r) for j, r in zip(jobs, runs, strict=True) if j.label == f"{v}_{o}"]
                 for v in args.variants for o in args.objectives}
        ft_jobs = few_shot_jobs(args, cells, named_targets())
        try:  # (their starting models exist only now)
            check_jobs(ft_jobs)
        except ValueError as err:
            publish(args.out, "transfer", record, md, plot_zero_shot)
            print(f"error: {err}\n(the zero-shot results above are written; no fine-tuning ran)", file=sys.stderr)
            return 2
        curves = few_shot_curves(ft_jobs, run_jobs(ft_jobs, args.num_cpus, args.address))
        zero_shot = {f"{r['variant']}_{r['objective']}_{slug(r['system'])}": float(np.mean(r["agents_vs_threshold"]))
                     for r in rows}
        record["few_shot"] = {"steps": args.few_shot, "curves": curves}
        plot_few_shot(curves, zero_shot, args.out / "few_shot.png")
        md += ("\n## Few-shot: score / PAPI's recalibrated rule after fine-tuning on the target "
               "(validation episodes; mean [min, max] over seeds)\n\n")
        md += markdown_table(["cell, target", *[f"{s} steps" for s in curves[0]["steps"]]],
                             [[c["label"], *[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                             zip(c["mean"], c["min"], c["max"], strict=True)]] for c in curves])
    publish(args.out, "transfer", record, md, plot_zero_shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
