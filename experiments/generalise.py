"""Generalisation: train on one model and hardware, evaluate on another (and with randomisation).

    python -m experiments.generalise --env papi_env/PapiKernelSchedule-v0 --seeds 2 --out results/generalise

Trains PPO (the env's block in experiments/configs/ppo.yaml) two ways, ``--seeds`` each:

- ``fixed``: LLaMA-65B on PAPI (A100), the default episodes;
- ``randomised``: every episode draws a model from {LLaMA-65B, GPT-3 66B} and a system from
  {PAPI, PAPI with H100 GPUs} (papi_env.base);

then evaluates both, with every rule of the variant (recalibrated for the target: a runtime
calibrates alpha offline for its own hardware), on held-out episodes of an unseen target:
GPT-3 175B on PAPI with H100 GPUs. Writes eval.json/eval.md and a summary table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import numpy as np

from experiments import evaluate
from experiments.cli import UsageError, check_output_dir, positive
from experiments.io import markdown_table, write_json, write_text
from experiments.jobs import TrainJob, run_jobs

TRAIN_SETTINGS = {
    "fixed": {},
    "randomised": {"model": ["llama-65b", "gpt3-66b"], "system": ["papi", {"base": "papi", "gpu": "H100"}]},
}
TARGET = {"model": "gpt3-175b", "system": {"base": "papi", "gpu": "H100"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train on one model/hardware, evaluate on another.")
    parser.add_argument("--env", default="papi_env/PapiKernelSchedule-v0")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--total-timesteps", type=int, default=40000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/generalise"))
    parser.add_argument("--reuse", action="store_true", help="keep finished runs and continue killed ones")
    args = parser.parse_args(argv)
    try:
        for flag, value in (("--seeds", args.seeds), ("--total-timesteps", args.total_timesteps),
                            ("--episodes", args.episodes)):
            positive(value, flag)
        check_output_dir(args.out)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    jobs = {setting: [TrainJob("ppo", args.env, seed, str(args.out / "runs"), args.total_timesteps, env_kwargs=kwargs,
                               label=setting, resume="continue" if args.reuse else "overwrite")
                      for seed in range(args.seeds)]
            for setting, kwargs in TRAIN_SETTINGS.items()}
    runs = iter(run_jobs([job for setting in jobs.values() for job in setting]))
    learned = {setting: [f"ppo:{next(runs) / 'best_model.zip'}" for _ in setting_jobs]
               for setting, setting_jobs in jobs.items()}
    base_cfg = jobs["fixed"][0].config()
    target = {**base_cfg["env_kwargs"], **TARGET}
    result = evaluate.evaluate(args.env, None, args.episodes, 0, target,
                               extra_policies=[p for runs in learned.values() for p in runs], intervals=False)
    write_json(args.out / "eval.json", result)
    write_text(args.out / "eval.md", evaluate.to_markdown(result))
    rows = []
    for setting, names in learned.items():
        r = np.array([result["policies"][n]["ratio_vs_best_rule"] for n in names])
        t = np.array([result["policies"][n]["ratio_vs_threshold"] for n in names])
        rows.append([setting, len(names), f"{r.mean():.4f} ± {r.std():.4f}", f"{r.min():.4f}",
                     f"{t.mean():.4f}"])
    md = (f"# Generalisation on {args.env}: trained on LLaMA-65B/A100 (fixed) or randomised, evaluated on "
          f"GPT-3 175B / H100 ({args.episodes} held-out episodes, best rule {result['best_rule']})\n\n"
          + markdown_table(["training", "seeds", "PPO / best rule (mean ± std)", "worst seed", "PPO / threshold"],
                           rows))
    write_text(args.out / "summary.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
