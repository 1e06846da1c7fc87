"""Hyperparameter and seed sweeps on Ray Tune, trained with this project's own training code.

    python -m experiments.sweep --algo ppo --env papi_env/PapiSchedule-v0 --seeds 2 \\
        --total-timesteps 2048 --num-cpus 2 --out results/sweep
    python -m experiments.sweep --space experiments/configs/sweeps/ppo_schedule.yaml --out results/sweep
    python -m experiments.sweep --out results/sweep --resume          (after a kill: finish what is left)

Every trial is experiments.train.train on one config block (configs/<algo>.yaml) with the trial's
values laid over it; it reports each validation's domain metrics (``score_vs_threshold``,
``gap_to_oracle``, ``gpu_share``, ``joules_per_token``, ...) to Tune, so ASHA
(``--scheduler asha``) stops weak trials on them. The search space is a YAML file:

    algo: ppo                           # optional; the command line wins
    env: papi_env/PapiSchedule-v0
    seeds: 2
    total_timesteps: 20000
    space:
      learning_rate: {loguniform: [1.0e-4, 1.0e-3]}   # any hyperparameter of the algorithm
      n_steps: {choice: [128, 256]}
      n_envs: {grid_search: [4, 16]}                 # or n_envs, normalize, eval_freq, eval_episodes
      env_kwargs:
        reward: {grid_search: [latency, energy]}    # env keyword arguments, fixed or searched

A value is fixed, or one of Tune's search-space functions written as ``{name: [arguments]}``:
grid_search, choice, uniform, quniform, loguniform, qloguniform, randint, qrandint, lograndint.
Random values are drawn ``--num-samples`` times and kept the same across the grid (seeds included),
so every sampled configuration is trained on every seed. With ``--search optuna`` (Tune's
OptunaSearch) there is no grid: Optuna proposes ``--num-samples`` configurations, each trained on a
seed derived from the configuration itself (``config_seed``), so a configuration always gets the same one.

Writes under ``--out``: ``sweep.json`` (engine, Ray version, nodes, every trial with its config,
seed, last validation's metrics, the node it ran on and its run directory; the best
configurations evaluated on held-out episodes with experiments.evaluate's paired method),
``sweep.md``, ``runs/<trial>/`` (each trial's run directory with its TensorBoard log: point
TensorBoard at ``runs/``), and ``tune/`` (Tune's own state, which ``--resume`` restores).

Local by default (``--num-cpus``); ``--address`` (or RAY_ADDRESS) runs on an existing Ray cluster
(experiments.fanout: each node needs this project installed and ``--out`` on a shared file system).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import numpy as np
import yaml

import papi_env
from agents.learned import ALGOS
from experiments import evaluate, fanout, stats
from experiments.cli import UsageError, check_env_kwargs, check_output_dir, positive
from experiments.io import markdown_table, write_json, write_text
from experiments.jobs import TrainJob, run_job
from experiments.run_config import ConfigError, check_overrides, load_config, with_overrides

METRIC = "score_vs_threshold"  # higher is better; every validation reports it
REPORTED = ("score_vs_threshold", "gap_to_oracle", "gpu_share", "joules_per_token", "tokens_per_s", "mean_tlp",
            "missed_target_share")
SPACE_FUNCTIONS = ("grid_search", "choice", "uniform", "quniform", "loguniform", "qloguniform", "randint",
                   "qrandint", "lograndint")
SETTINGS_FILE = "sweep_settings.json"  # what --resume needs to rebuild the same sweep
TUNE_DIR = "tune"


# ------------------------------------------------------------------------------ the search space
def load_space_file(path: Path) -> dict[str, Any]:
    """The YAML file's settings (algo, env, seeds, total_timesteps, space), checked for shape."""
    if not Path(path).is_file():
        raise UsageError(f"--space {path}: no such file")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"--space {path}: not valid YAML: {err}") from None
    allowed = {"algo", "env", "seeds", "total_timesteps", "space"}
    if not isinstance(data, dict) or set(data) - allowed:
        extra = sorted(set(data) - allowed) if isinstance(data, dict) else data
        raise UsageError(f"--space {path}: top-level keys may be {sorted(allowed)}; got {extra!r}")
    if not isinstance(data.get("space", {}), dict):
        raise UsageError(f"--space {path}: 'space' must be a mapping of name: value or {{function: [args]}}")
    return data


def _is_domain(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_FUNCTIONS


def _domain(name: str, value: dict[str, Any]) -> Any:
    """A Tune search-space object from ``{function: [args]}``."""
    from ray import tune

    function, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise UsageError(f"space.{name}: {function} takes a non-empty list, got {args!r}")
    if function == "grid_search":
        return tune.grid_search(args)
    if function == "choice":
        return tune.choice(args)
    try:
        return getattr(tune, function)(*args)
    except (TypeError, ValueError) as err:
        raise UsageError(f"space.{name}: {function}{tuple(args)} is not valid: {err}") from None


def _values(name: str, value: Any) -> list[Any]:
    """The values a space entry can take that can be checked before the sweep: every value of a
    grid or a choice, both ends of a range; a fixed value itself. A one-key mapping whose key is
    not a search function but whose value is a list is taken for a misspelt function."""
    if isinstance(value, dict) and len(value) == 1 and not _is_domain(value):
        (key, args), = value.items()
        if isinstance(args, list):
            raise UsageError(f"space.{name}: {key!r} is not a search-space function; allowed: {list(SPACE_FUNCTIONS)}")
    if not _is_domain(value):
        return [value]
    function, args = next(iter(value.items()))
    if function in ("grid_search", "choice"):
        return list(args)
    return [a for a in args[:2]]  # the range's ends (q steps and bases are Tune's to check)


def tune_space(space: dict[str, Any], algo: str, env_id: str, search: str) -> dict[str, Any]:
    """Tune's param_space from the YAML ``space``. Everything that can fail in a trial fails here,
    before Ray starts: unknown names, malformed functions, and every grid and choice value (and
    both ends of every range) laid over the config one at a time through the same checks as
    experiments.train, env kwargs included (the env is built once per value)."""
    check_overrides(algo, space, "space")  # a ConfigError is a UsageError
    env_kwargs = space.get("env_kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise UsageError(f"space.env_kwargs must be a mapping of keyword arguments, got {env_kwargs!r}")
    flat = {**{k: v for k, v in space.items() if k != "env_kwargs"},
            **{f"env_kwargs.{k}": v for k, v in env_kwargs.items()}}
    grids = [k for k, v in flat.items() if _is_domain(v) and "grid_search" in v]
    if search == "optuna" and grids:
        raise UsageError(f"--search optuna samples every value; replace grid_search in {grids} by choice")
    out: dict[str, Any] = {key: _domain(key, value) if _is_domain(value) else value for key, value in flat.items()}
    cfg = load_config(algo, env_id)
    first = {key: _values(key, value)[0] for key, value in flat.items()}
    check_env_kwargs(env_id, with_overrides(cfg, first, "space")["env_kwargs"], "space.env_kwargs")
    for key, value in flat.items():
        for v in _values(key, value)[1:]:
            trial = with_overrides(cfg, {**first, key: v}, "space")
            if key.startswith("env_kwargs."):
                check_env_kwargs(env_id, trial["env_kwargs"], f"space.{key}={v!r}")
    return out


# ------------------------------------------------------------------------------ one trial
def _plain(value: Any) -> Any:
    """JSON-able copies of numpy scalars and nested containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_seed(config: dict[str, Any], base: int) -> int:
    """A seed that a configuration always gets (Optuna's trials carry none): ``base`` plus the CRC-32
    of the configuration's JSON."""
    return base + zlib.crc32(json.dumps(_plain(config), sort_keys=True).encode()) % 1_000_000


def trial_job(config: dict[str, Any], settings: dict[str, Any], trial_id: str) -> TrainJob:
    """A trial as a training job: the trial's values over the config block, its seed, a run
    directory named after the trial, and ``continue`` (a trial that a killed sweep left unfinished
    resumes from its newest intact checkpoint when ``--resume`` restores the sweep)."""
    seed = int(config["seed"]) if "seed" in config else config_seed(config, settings["seed_base"])
    return TrainJob(settings["algo"], settings["env"], seed, str(Path(settings["out"]) / "runs"),
                    settings["total_timesteps"], overrides={k: v for k, v in config.items() if k != "seed"},
                    label=trial_id, resume="continue")


def run_trial(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """A Tune function trainable: train one agent (experiments.jobs), reporting every validation."""
    import ray
    from ray import tune

    job = trial_job(config, settings, tune.get_context().get_trial_id())
    node = ray.get_runtime_context().get_node_id()
    reported = []

    def report(entry: dict) -> None:
        reported.append(entry)
        tune.report({k: entry[k] for k in ("timesteps", *REPORTED) if k in entry}
                    | {"seed": job.seed, "node": node, "run_dir": str(job.run_dir)})

    run_dir = run_job(job, on_validation=report)
    if not reported:  # resumed after its last validation: report that one, so the trial has its metrics
        report(json.loads((run_dir / "evaluations.json").read_text())[-1])


# ------------------------------------------------------------------------------ the sweep
def _tuner(settings: dict[str, Any], space: dict[str, Any], resume: bool) -> Any:
    # each trial keeps its own TensorBoard log and evaluations.json; Tune's per-trial CSV and TBX
    # loggers would write the same metrics a second time. Its JSON log stays (RunConfig below): the
    # result grid reads each trial's metrics from it, and warns "Failed to fetch metrics" without it
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), {"cpu": 1})
    storage = str(Path(settings["out"]) / TUNE_DIR)
    if resume:
        return tune.Tuner.restore(storage, trainable, resume_unfinished=True, resume_errored=True)
    scheduler = search = None
    if settings["scheduler"] == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="timesteps", max_t=settings["total_timesteps"],
                                  grace_period=max(1, settings["total_timesteps"] // 4), reduction_factor=2)
    if settings["search"] == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(seed=settings["seed_base"])
    else:  # random values drawn once per sample and kept across the grid, seeds included
        search = BasicVariantGenerator(constant_grid_search=True, random_state=settings["seed_base"])
        space = {**space, "seed": tune.grid_search(list(range(settings["seed_base"],
                                                              settings["seed_base"] + settings["seeds"])))}
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler, search_alg=search,
                                    num_samples=settings["num_samples"], trial_dirname_creator=lambda t: t.trial_id,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=Path(storage).name, storage_path=str(Path(storage).parent), verbose=0,
                                  callbacks=[JsonLoggerCallback()]))


def run_sweep(settings: dict[str, Any], num_cpus: int | None = None, address: str | None = None,
              resume: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run (or resume) the sweep's trials on Ray; their records, and where they ran."""
    where = fanout.connect(num_cpus, address)
    space = tune_space(settings["space"], settings["algo"], settings["env"], settings["search"])
    return collect(_tuner(settings, space, resume).fit()), where


def collect(results: Any) -> list[dict[str, Any]]:
    """One record per trial, in trial order: its values, seed, last reported metrics and node."""
    trials = []
    for result in results:
        m = result.metrics or {}
        config = _plain({k: v for k, v in (result.config or {}).items() if k != "seed"})
        trials.append({"trial_id": m.get("trial_id") or Path(result.path).name, "config": config,
                       "seed": m.get("seed"), "node": m.get("node"), "run_dir": m.get("run_dir"),
                       "timesteps": m.get("timesteps"), **{k: m.get(k) for k in REPORTED},
                       "error": None if result.error is None else repr(result.error)})
    return sorted(trials, key=lambda t: t["trial_id"])


def best_configs(trials: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The ``top`` configurations by mean last-validation score over their seeds."""
    groups: dict[str, list[dict]] = {}
    for t in trials:
        if t["error"] is None and t[METRIC] is not None:
            groups.setdefault(json.dumps(t["config"], sort_keys=True), []).append(t)
    ranked = sorted(groups.values(), key=lambda ts: -float(np.mean([t[METRIC] for t in ts])))
    return [{"config": ts[0]["config"], "trials": [t["trial_id"] for t in ts],
             "validation_" + METRIC: float(np.mean([t[METRIC] for t in ts])),
             "run_dirs": [t["run_dir"] for t in ts]} for ts in ranked[:top]]


def evaluate_best(settings: dict[str, Any], best: list[dict[str, Any]]) -> None:
    """Each best configuration's agents (best model of every seed) against every rule and the oracle
    on the same held-out episodes (experiments.evaluate), in place."""
    algo, env_id = settings["algo"], settings["env"]
    for entry in best:
        kwargs = with_overrides(load_config(algo, env_id), entry["config"], "trial")["env_kwargs"]
        learned = [f"{algo}:{run}/best_model.zip" for run in entry["run_dirs"]]
        result = evaluate.evaluate(env_id, None, settings["episodes"], settings["eval_seed"], kwargs,
                                   extra_policies=learned, intervals=False)  # its own IQM below
        p = result["policies"]
        per_episode = np.array([p[n]["episode_scores"] for n in learned]) / np.array(
            p[result["best_rule"]]["episode_scores"])
        entry["held_out"] = {
            "episodes": settings["episodes"], "best_rule": result["best_rule"],
            "vs_threshold": [p[n]["ratio_vs_threshold"] for n in learned],
            "vs_best_rule": [p[n]["ratio_vs_best_rule"] for n in learned],
            "vs_best_rule_iqm": stats.iqm_ci(per_episode),
            "oracle_vs_best_rule": p["oracle"]["ratio_vs_best_rule"]}


def to_markdown(record: dict[str, Any]) -> str:
    keys = sorted({k for t in record["trials"] for k in t["config"]})
    rows = [[t["trial_id"], t["seed"], (t["node"] or "?")[:8], *[t["config"].get(k, "") for k in keys],
             *(("-" if t[m] is None else f"{t[m]:.4f}") for m in ("score_vs_threshold", "gap_to_oracle",
                                                                  "gpu_share", "joules_per_token")),
             "ok" if t["error"] is None else "error"] for t in record["trials"]]
    text = (f"# Sweep: {record['algo']} on {record['env']}, {len(record['trials'])} trials on "
            f"{record['nodes']} Ray node(s), {record['wall_s']:.0f} s\n\n"
            f"Ray {record['ray_version']}; search {record['search']}, scheduler {record['scheduler']}; "
            f"{record['total_timesteps']} steps per trial. Metrics: the last validation of each trial "
            "(score_vs_threshold: the agent's score / PAPI's threshold rule's on the validation episodes).\n\n"
            + markdown_table(["trial", "seed", "node", *keys, "score / threshold", "gap to oracle", "GPU share",
                              "J/token", "status"], rows))
    if record["best"]:
        best_rows = []
        for b in record["best"]:
            h = b.get("held_out", {})
            best_rows.append([json.dumps(b["config"], sort_keys=True), len(b["trials"]),
                              f"{b['validation_' + METRIC]:.4f}",
                              " ".join(f"{v:.4f}" for v in h.get("vs_threshold", [])),
                              h.get("best_rule", "-"),
                              stats.fmt_ci(h["vs_best_rule_iqm"], digits=4) if h else "-",
                              f"{h['oracle_vs_best_rule']:.4f}" if h else "-"])
        text += (f"\n## Best configurations on {record['episodes']} held-out episodes (paired, experiments.evaluate)"
                 "\n\n" + markdown_table(["config", "seeds", "validation score / threshold",
                                          "held-out score / threshold (per seed)", "best rule",
                                          "agent / best rule IQM [95% CI]", "oracle / best rule"], best_rows))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Ray Tune sweep over seeds and hyperparameters.")
    parser.add_argument("--space", type=Path, help="YAML search space (see the module docstring)")
    parser.add_argument("--algo", choices=ALGOS)
    parser.add_argument("--env", help=f"env id, of {list(papi_env.ALL_ENV_IDS)} (default {papi_env.DEFAULT_ENV_ID})")
    parser.add_argument("--seeds", type=int, help="seeds per configuration (default 1)")
    parser.add_argument("--seed-base", type=int, default=0, help="first seed")
    parser.add_argument("--total-timesteps", type=int, help="env steps per trial (default: the config's)")
    parser.add_argument("--num-samples", type=int, default=1, help="random/Optuna configurations to draw")
    parser.add_argument("--search", choices=("random", "optuna"), default="random")
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo")
    parser.add_argument("--episodes", type=int, default=20, help="held-out episodes for the best configurations")
    parser.add_argument("--eval-seed", type=int, default=0, help="held-out episode set (experiments.evaluate)")
    parser.add_argument("--top", type=int, default=1, help="best configurations to evaluate on held-out episodes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="restore a killed sweep in --out; finished trials "
                        "are kept, unfinished ones continue from their checkpoints")
    fanout.add_arguments(parser, "CPUs of the local Ray instance, one per trial (default: all)")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (UsageError, ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    trials, where = run_sweep(settings, args.num_cpus, args.address, args.resume)
    best = best_configs(trials, settings["top"])
    evaluate_best(settings, best)
    record = {"engine": "ray", "ray_version": where["ray_version"], "nodes": where["nodes"],
              "cpus": where["cpus"], "algo": settings["algo"], "env": settings["env"],
              "search": settings["search"], "scheduler": settings["scheduler"],
              "total_timesteps": settings["total_timesteps"], "episodes": settings["episodes"],
              "space": settings["space"], "wall_s": time.perf_counter() - start, "trials": trials, "best": best}
    out = Path(settings["out"])
    write_json(out / "sweep.json", _plain(record))
    md = to_markdown(record)
    write_text(out / "sweep.md", md)
    print(md)
    return 0 if all(t["error"] is None for t in trials) else 1


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's settings: from the command line and --space, or, with --resume, as first saved."""
    out = check_output_dir(args.out).resolve()
    saved = out / SETTINGS_FILE
    if args.resume:
        if not saved.is_file() or not (out / TUNE_DIR).is_dir():
            raise UsageError(f"--resume: no sweep to resume in {out} (no {SETTINGS_FILE} or {TUNE_DIR}/)")
        return json.loads(saved.read_text())
    if (out / TUNE_DIR).exists():
        raise UsageError(f"--out {out} already holds a sweep; pass --resume to finish it, or choose another --out")
    data = load_space_file(args.space) if args.space else {}
    algo = args.algo or data.get("algo", "ppo")
    if algo not in ALGOS:
        raise UsageError(f"algo {algo!r} is unknown; allowed: {list(ALGOS)}")
    env_id = args.env or data.get("env", papi_env.DEFAULT_ENV_ID)
    if env_id not in papi_env.ALL_ENV_IDS:
        raise UsageError(f"unknown env {env_id!r}; allowed: {list(papi_env.ALL_ENV_IDS)}")
    cfg = load_config(algo, env_id)
    seeds = args.seeds if args.seeds is not None else data.get("seeds", 1)
    total = args.total_timesteps if args.total_timesteps is not None else data.get("total_timesteps",
                                                                                   cfg["n_timesteps"])
    for flag, value in (("--seeds", seeds), ("--total-timesteps", total), ("--num-samples", args.num_samples),
                        ("--episodes", args.episodes), ("--top", args.top)):
        positive(value, flag)
    if args.num_cpus is not None:
        positive(args.num_cpus, "--num-cpus")
    if args.search == "optuna" and seeds != 1:
        raise UsageError("--search optuna trains each configuration on one seed derived from it; leave --seeds at 1")
    space = data.get("space", {})
    tune_space(space, algo, env_id, args.search)  # fail now on a bad space, not in a trial
    settings = {"algo": algo, "env": env_id, "seeds": seeds, "seed_base": args.seed_base, "total_timesteps": total,
                "num_samples": args.num_samples, "search": args.search, "scheduler": args.scheduler,
                "episodes": args.episodes, "eval_seed": args.eval_seed, "top": args.top, "out": str(out),
                "space": space}
    write_json(saved, settings)
    return settings


if __name__ == "__main__":
    sys.exit(main())
