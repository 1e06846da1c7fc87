"""The main job: train PPO on the default env, compare it with PAPI's rule, print the table.

    python -m experiments.demo --out results/demo        (what `make demo` runs)

1. Trains PPO (experiments/configs/ppo.yaml) on papi_env/PapiSchedule-v0, TensorBoard logs in
   <out>/runs/.
2. Evaluates it against threshold, always-gpu, always-pim, oracle and random on held-out episodes.
3. Writes eval.json, eval.md and demo.png (ratios to the threshold; the training curve with the
   threshold's level), and prints the `tensorboard --logdir` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import papi_env
from experiments import evaluate, train
from experiments.callbacks import history_ratio
from experiments.cli import check_output_dir, positive
from experiments.io import save_figure, write_results
from experiments.plotting import pyplot
from experiments.run_config import load_config


def plot(result: dict, history: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(result["policies"])
    rows = [result["policies"][n] for n in names]
    iqm = [r["iqm_vs_best_rule"]["iqm"] for r in rows]
    low = [r["iqm_vs_best_rule"]["iqm"] - r["iqm_vs_best_rule"]["ci_low"] for r in rows]
    high = [r["iqm_vs_best_rule"]["ci_high"] - r["iqm_vs_best_rule"]["iqm"] for r in rows]
    ax1.bar(range(len(names)), iqm, yerr=[low, high], capsize=3, color="#0072B2")
    ax1.set_xticks(range(len(names)), [n.split(":")[0] for n in names], rotation=20)
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.set_ylim(0, max(1.1, max(r["iqm_vs_best_rule"]["ci_high"] for r in rows) * 1.05))
    ax1.set_ylabel(f"score / best rule ({result['best_rule']})")
    ax1.set_title(f"{result['episodes']} held-out episodes: IQM and 95% bootstrap CI")
    steps = [h["timesteps"] for h in history]
    ax2.plot(steps, [history_ratio(h) for h in history], marker="o", label="PPO (validation episodes)")
    ax2.axhline(1.0, color="#D55E00", ls="--", label="PAPI's threshold rule")
    ax2.set_ylim(0, 1.1)
    ax2.set_xlabel("environment steps")
    ax2.set_ylabel("score / threshold rule's score")
    ax2.legend(loc="lower right")
    ax2.set_title("training curve (one seed)")
    fig.suptitle(f"PPO on {result['env'].split('/')[-1]} (LLaMA-65B, {result['objective']})", y=1.02)
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train PPO and compare it with PAPI's threshold rule.")
    parser.add_argument("--out", type=Path, default=Path("results/demo"))
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: the config's n_timesteps")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    env_id = papi_env.DEFAULT_ENV_ID
    try:
        positive(args.episodes, "--episodes")
        if args.total_timesteps is not None:
            positive(args.total_timesteps, "--total-timesteps")
        check_output_dir(args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = load_config("ppo", env_id)
    total = args.total_timesteps or cfg["n_timesteps"]
    run_dir = train.train("ppo", env_id, cfg, total, args.seed, args.out / "runs", progress_bar=not args.no_progress,
                          overwrite=True)
    model_path = run_dir / "best_model.zip"
    result = evaluate.evaluate(env_id, ["threshold", "always-gpu", "always-pim", "oracle", "random",
                                        f"ppo:{model_path}"], args.episodes, args.seed, cfg["env_kwargs"])
    history = json.loads((run_dir / "evaluations.json").read_text())
    speed = json.loads((run_dir / "train_speed.json").read_text())
    best = max(history, key=history_ratio)
    result["training"] = {"run_dir": str(run_dir), "total_timesteps": total, "best_at_timesteps": best["timesteps"],
                          **speed}
    md = evaluate.to_markdown(result) + (
        f"\nPPO: {total} training steps at {speed['train_steps_per_s']:.0f} steps/s; best validation model "
        f"at {best['timesteps']} steps ({history_ratio(best):.4f}x threshold on validation seeds).\n")
    write_results(args.out, {"eval.json": result, "eval.md": md})
    plot(result, history, args.out / "demo.png")
    print(md)
    print(f"results: {args.out}/eval.json, eval.md, demo.png")
    print(f"view the training curves:  tensorboard --logdir {args.out / 'runs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
