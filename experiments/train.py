"""Train a stable-baselines3 agent on a PAPI environment.

    python -m experiments.train --algo ppo --env papi_env/PapiSchedule-v0 --total-timesteps 60000 \\
        --seed 0 --logdir runs/

Hyperparameters and env keyword arguments come from ``experiments/configs/<algo>.yaml`` (or
``--config``), per env id, in rl-baselines3-zoo's spirit; CLI flags override them.

A run directory ``<logdir>/<algo>_<env>_s<seed>/`` is one run's identity. It keeps: ``run.json``
(resolved config and its ``identity``, command, versions, seed, git commit), ``tb/`` (TensorBoard:
SB3's scalars plus ``eval/*`` domain metrics), ``evaluations.json``, ``best_model.zip`` (best
``eval/speedup_vs_threshold`` on validation seeds), ``final_model.zip``, ``checkpoints/`` (exact,
atomic: experiments.checkpoints) and the VecNormalize statistics beside each model. Every model
file is written atomically.

A fresh run refuses a non-empty run directory (``--overwrite`` clears it). ``--resume`` continues
a killed run from its newest intact checkpoint (falling back past damaged ones, and saying so),
refuses if the settings differ from run.json's (naming the keys), and truncates the evaluations,
the best model and TensorBoard (purge_step) back to the checkpoint's step: the resumed history is
the one an uninterrupted run of the same seed writes.

Validation episodes use seeds VALIDATION_SEED_BASE + i, disjoint from the final evaluation's
(experiments.evaluate.EVAL_SEED_BASE + ...); training batches come from the training envs' own RNGs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import gymnasium as gym
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

import papi_env  # noqa: F401  (registers the environments)
from agents.learned import ALGOS, algo_class, vecnormalize_path
from experiments.callbacks import DomainEvalCallback, RolloutProgressBar, RunCheckpoint, effective_checkpoint_freq
from experiments.checkpoints import CHECKPOINT_DIR, discard_after, latest_intact, restore_rng_state
from experiments.cli import UsageError, parse_env_kwargs, positive
from experiments.io import write_json
from experiments.run_config import POSITIVE_INT_KEYS, ConfigError, parse_schedules, resolve_config, validate_config
from experiments.run_records import (
    prepare_run_dir,
    run_identity,
    run_record,
    save_agent,
    tensorboard_logger,
    truncate_history,
)
from experiments.vec_env import VEC_KINDS, NativeVecEnv
from papi_env.wrappers import EDPStepScale, FlatDiscreteActions


def make_env(env_id: str, cfg: dict, seed: int) -> Any:
    """The training environments: ``cfg["vec"]`` 'native' (default: one array core stepping all
    n_envs, experiments.vec_env; envs without a native form get a DummyVecEnv), or 'dummy' /
    'subproc' (SB3's DummyVecEnv / SubprocVecEnv of
    scalar environments). Environment i is seeded with seed + i either way, so all three give the
    same episodes."""
    # make_vec_env asks for render_mode='rgb_array' unless told otherwise; these envs render text only.
    env_kwargs = {"render_mode": None, **cfg["env_kwargs"]}
    step_scaling = env_kwargs.get("reward") == "edp" and cfg.get("edp_step_scaling", True)
    kind = cfg.get("vec", "native")  # checked by run_config.validate_config
    if kind == "native" and env_id not in papi_env.VECTOR_ENTRY_POINTS:
        kind = "dummy"  # no native vector form (an env registered from outside): scalar envs in a DummyVecEnv
    if kind == "native":
        native = NativeVecEnv(env_id, cfg["n_envs"], env_kwargs, edp_step_scaling=step_scaling,
                              flat_actions=cfg.get("flat_actions", False))
        native.seed(seed)
        return native
    wrappers = []
    if step_scaling:
        wrappers.append(EDPStepScale)
    if cfg.get("flat_actions", False):
        wrappers.append(FlatDiscreteActions)

    def wrap(env: gym.Env) -> gym.Env:
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    venv = make_vec_env(env_id, n_envs=cfg["n_envs"], seed=seed, env_kwargs=env_kwargs,
                        vec_env_cls=DummyVecEnv if kind == "dummy" else SubprocVecEnv, wrapper_class=wrap)
    return venv


def normalized(venv: Any, cfg: dict) -> Any:
    """``venv`` wrapped in VecNormalize when the config asks for it."""
    norm = cfg["normalize"]
    if norm:
        kwargs = norm if isinstance(norm, dict) else {}
        return VecNormalize(venv, **kwargs)
    return venv


def check_device(device: str) -> str:
    """``device`` if torch can use it here; a UsageError naming what is allowed otherwise."""
    import torch

    try:
        found = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this torch build or machine has no CUDA device; use cpu")
    if found.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: use cpu, cuda or cuda:N")
    return device


def configure_torch(threads: int | None = 1) -> None:
    """Torch as every training here runs it: ``threads`` intra-op threads (None: torch's default;
    on 2 cores, one per process keeps training beside the environments fast) and no argument
    validation in torch.distributions. PPO builds its action distributions at every step and
    minibatch; their checks cost it 6% of its speed on CartPole and 16% on PapiKernelSchedule's
    four categoricals (experiments.bench --train), and they never change a number (the same
    seed trains the same parameters)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    torch.distributions.Distribution.set_default_validate_args(False)


def fine_tuning_start(cls: Any, cfg: dict, base_venv: Any, seed: int, device: str) -> tuple[Any, Any]:
    """(model, env) starting from the saved agent ``cfg["init_model"]``: its weights and optimiser
    state, its VecNormalize statistics (``<stem>_vecnormalize.pkl``, still updated) when the run
    normalises, on the new environments; the config's hyperparameters apply from here on."""
    path = Path(cfg["init_model"])
    venv = base_venv
    if cfg["normalize"]:
        stats = vecnormalize_path(path)
        if not stats.is_file():
            raise FileNotFoundError(f"init_model {path}: the run normalises but {stats} is missing")
        venv = VecNormalize.load(str(stats), base_venv)
        venv.training = True
    hyperparams = parse_schedules(cfg["hyperparams"], "init_model.hyperparams")
    model = cls.load(path, env=venv, device=device, custom_objects={k: v for k, v in hyperparams.items()
                                                                   if k in ("learning_rate", "clip_range")})
    model.set_random_seed(seed)
    model.num_timesteps = 0  # this run's steps count from here
    return model, venv


def train(algo: str, env_id: str, cfg: dict, total_timesteps: int, seed: int, logdir: Path,
          resume: bool = False, run_name: str | None = None, progress_bar: bool = True, verbose: int = 1,
          overwrite: bool = False, command: list[str] | None = None, torch_threads: int | None = 1,
          on_validation: Callable[[dict], None] | None = None, device: str = "cpu") -> Path:
    """Train (or resume) one agent; return its run directory.

    ``on_validation(entry)`` is called after every validation with its evaluations.json entry (a
    sweep reports it to Ray Tune). ``device``: torch's device for the networks, 'cpu' by default
    (these MLPs are small: a GPU's transfers cost more than it saves), 'cuda' or 'cuda:N'.

    A fresh run refuses a non-empty run directory unless ``overwrite``; ``resume`` continues from
    the newest intact checkpoint, refusing a run whose recorded settings differ, and first
    truncates the evaluations, best model and TensorBoard log back to the checkpoint's step, so
    the resumed history is the one an uninterrupted run writes (experiments.checkpoints).
    """
    validate_config({**cfg, "n_timesteps": total_timesteps}, "config")
    configure_torch(torch_threads)  # every script that trains goes through here (see --torch-threads)
    run_dir = Path(logdir) / (run_name or f"{algo}_{env_id.split('/')[-1]}_s{seed}")
    identity = run_identity(algo, env_id, cfg, seed)
    prepare_run_dir(run_dir, identity, resume, overwrite)
    cls = algo_class(algo)
    off_policy = algo in ("dqn", "sac")
    if resume:
        found = latest_intact(run_dir)
        if found is None:
            raise FileNotFoundError(f"--resume: no intact checkpoint in {run_dir / CHECKPOINT_DIR}")
        steps, ckpt, notes = found
        for note in notes:
            print(f"warning: {note}; falling back to {steps} steps", file=sys.stderr)
        with open(ckpt / "envs.pkl", "rb") as fh:
            base_venv = pickle.load(fh)
        venv = base_venv
        if cfg["normalize"]:
            stats = ckpt / "vecnormalize.pkl"
            if not stats.is_file():
                raise FileNotFoundError(f"--resume: {ckpt} has no vecnormalize.pkl but the run normalises")
            venv = VecNormalize.load(str(stats), base_venv)
        discard_after(run_dir, steps)
        truncate_history(run_dir, steps, ckpt)
        model = cls.load(ckpt / "model.zip", env=venv, device=device, force_reset=False)
        if off_policy:
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        with open(ckpt / "rng.pkl", "rb") as fh:
            restore_rng_state(model, pickle.load(fh), venv if cfg["normalize"] else None)
        model.set_logger(tensorboard_logger(run_dir, purge_step=steps))
        if verbose:
            print(f"resuming {run_dir} from {steps} steps")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "run.json", run_record(algo, env_id, cfg, seed, total_timesteps, command))
        base_venv = make_env(env_id, cfg, seed)
        if cfg.get("init_model"):  # fine-tuning: the saved agent's weights and normalisation statistics
            model, venv = fine_tuning_start(cls, cfg, base_venv, seed, device)
        else:
            venv = normalized(base_venv, cfg)
            model = cls(cfg["policy"], venv, seed=seed, device=device, verbose=0,
                        **parse_schedules(cfg["hyperparams"], f"{env_id}.hyperparams"))
        model.set_logger(tensorboard_logger(run_dir, purge_step=None))
    callbacks = CallbackList([
        *([RolloutProgressBar()] if progress_bar else []),
        RunCheckpoint(run_dir, effective_checkpoint_freq(cfg, total_timesteps), base_venv, off_policy),
        DomainEvalCallback(env_id, cfg["env_kwargs"], cfg["eval_freq"], cfg["eval_episodes"], run_dir,
                           cfg["n_envs"], verbose=verbose,
                           hparams={"algo": algo, "env": env_id, "seed": seed, "n_envs": cfg["n_envs"],
                                    "total_timesteps": total_timesteps, **cfg["hyperparams"]},
                           on_validation=on_validation),
    ])
    remaining = total_timesteps - model.num_timesteps
    start = time.perf_counter()
    # even with no steps left (a run killed after its last checkpoint): the end-of-training
    # callbacks write what that run never wrote (its final evaluation, best model, hparams)
    model.learn(max(remaining, 0), callback=callbacks, reset_num_timesteps=not resume)
    seconds = time.perf_counter() - start
    save_agent(model, run_dir / "final_model.zip")
    taken = model.num_timesteps - (total_timesteps - remaining)
    speed = {"train_seconds": seconds, "train_steps": int(taken),
             "train_steps_per_s": max(taken, 0) / seconds if seconds else 0.0}
    write_json(run_dir / "train_speed.json", speed)
    if verbose:
        print(f"trained {max(taken, 0)} steps in {seconds:.1f} s ({speed['train_steps_per_s']:.0f} steps/s); "
              f"run directory {run_dir}")
    venv.close()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train an SB3 agent on a PAPI environment.")
    parser.add_argument("--algo", choices=ALGOS, default="ppo")
    parser.add_argument("--env", default=papi_env.DEFAULT_ENV_ID)
    parser.add_argument("--config", type=Path, help="YAML config (default experiments/configs/<algo>.yaml)")
    parser.add_argument("--total-timesteps", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", type=Path, default=Path("runs"))
    parser.add_argument("--run-name")
    parser.add_argument("--n-envs", type=int)
    parser.add_argument("--eval-freq", type=int)
    parser.add_argument("--eval-episodes", type=int)
    parser.add_argument("--env-kwargs", help="JSON dict merged over the config's env_kwargs")
    parser.add_argument("--init-model", help="fine-tune this saved model (.zip; its VecNormalize statistics beside "
                        "it) instead of starting from random weights")
    parser.add_argument("--checkpoint-freq", type=int,
                        help="env steps between checkpoints (default: the config's; at least every 10%% of a run)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from its newest intact checkpoint (same settings required)")
    parser.add_argument("--overwrite", action="store_true", help="clear a non-empty run directory and start afresh")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--vec", choices=VEC_KINDS, default="native",
                        help="training environments: one native array core (default), or SB3's DummyVecEnv / "
                             "SubprocVecEnv of scalar environments (same episodes)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch CPU threads (default 1: the policy networks are small and more threads contend "
                             "with the environments; two runs side by side on 2 cores went from ~70 steps/s "
                             "each with torch's default to ~900 with one)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the networks: cpu (default; these MLPs are small), cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    try:
        positive(args.torch_threads, "--torch-threads")
        check_device(args.device)
        overrides = {key: positive(getattr(args, key), "--" + key.replace("_", "-"))
                     for key in POSITIVE_INT_KEYS if getattr(args, key) is not None}
        if args.total_timesteps is not None:
            overrides["n_timesteps"] = positive(args.total_timesteps, "--total-timesteps")
        overrides["env_kwargs"] = parse_env_kwargs(args.env_kwargs)
        overrides["vec"] = args.vec
        if args.init_model is not None:
            overrides["init_model"] = args.init_model
        cfg = resolve_config(args.algo, args.env, args.config, overrides, where="command line")
        total = cfg["n_timesteps"]
        command = [sys.executable, "-m", "experiments.train", *(sys.argv[1:] if argv is None else argv)]
        train(args.algo, args.env, cfg, total, args.seed, args.logdir, args.resume, args.run_name,
              progress_bar=not args.no_progress, overwrite=args.overwrite, command=command,
              torch_threads=args.torch_threads, device=args.device)
    except (ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
