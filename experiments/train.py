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
import json
import math
import pickle
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.rl_extra import require_rl

require_rl(__name__)  # one clear line if the [rl] extra is missing

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback, tqdm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

import papi_env  # noqa: F401  (registers the environments)
from agents.learned import ALGOS, LearnedPolicy, algo_class, vecnormalize_path
from agents.policies import Oracle, make_policy
from experiments.checkpoints import (
    CHECKPOINT_DIR,
    checkpoints,
    discard_after,
    latest_intact,
    restore_rng_state,
    save_checkpoint,
)
from experiments.cli import check_env_kwargs, parse_env_kwargs, positive
from experiments.evaluate import episodes_of, run_episode
from experiments.io import atomic_copy, atomic_file, write_json
from experiments.tensorboard_log import RunBoard
from experiments.vec_env import VEC_KINDS, NativeVecEnv
from papi_env.wrappers import EDPStepScale, FlatDiscreteActions

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
VALIDATION_SEED_BASE = 500_000
ZOO_RUN_KEYS = {"policy", "n_envs", "n_timesteps", "normalize", "env_kwargs", "env_wrapper"}
EXTRAS_KEY = "papi-gym"
EXTRA_KEYS = {"eval_freq", "eval_episodes", "checkpoint_freq", "edp_step_scaling", "vec"}
FLAT_WRAPPER = "papi_env.wrappers.FlatDiscreteActions"


class ConfigError(ValueError):
    """A training config is missing, malformed or does not cover the env."""


SCHEDULED_HYPERPARAMS = ("learning_rate", "clip_range")


def linear_schedule(initial: float) -> Callable[[float], float]:
    """SB3 schedule falling linearly from ``initial`` at the start to 0 at the end of training
    (rl-baselines3-zoo's ``lin_<value>``); SB3 passes the remaining progress, 1 -> 0."""
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial
    return schedule


def parse_schedules(hyperparams: dict[str, Any], where: str) -> dict[str, Any]:
    """``hyperparams`` with zoo-style ``"lin_<value>"`` strings of SCHEDULED_HYPERPARAMS made
    into linear schedules; any other string there is a ConfigError."""
    out = dict(hyperparams)
    for key in SCHEDULED_HYPERPARAMS:
        value = out.get(key)
        if not isinstance(value, str):
            continue
        try:
            initial = float(value.removeprefix("lin_")) if value.startswith("lin_") else None
        except ValueError:
            initial = None
        if initial is None or not initial > 0:
            raise ConfigError(f"{where}: {key} must be a positive number or 'lin_<positive number>' "
                              f"(linear decay to 0), got {value!r}")
        out[key] = linear_schedule(initial)
    return out


def load_config(algo: str, env_id: str, path: str | Path | None = None) -> dict[str, Any]:
    """The config of ``env_id`` in ``path`` (default configs/<algo>.yaml), validated.

    The file is in rl-baselines3-zoo's format, which the zoo loads unchanged: one block per env id
    with ``policy``, ``n_envs``, ``n_timesteps``, ``normalize``, ``env_kwargs``, ``env_wrapper``
    and the algorithm's hyperparameters side by side (``lin_<value>`` schedules allowed). As in the
    zoo, observation/return normalisation uses the algorithm's ``gamma``. papi-gym's own settings
    (``eval_freq``, ``eval_episodes``, ``checkpoint_freq``, ``edp_step_scaling``) live under the
    top-level ``papi-gym`` key, per env id, which the zoo ignores. Returned as one flat dict with
    the hyperparameters under ``hyperparams``.
    """
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; allowed: {list(ALGOS)}")
    path = Path(path) if path else CONFIG_DIR / f"{algo}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or env_id not in data:
        envs = sorted(k for k in data if k != EXTRAS_KEY) if isinstance(data, dict) else []
        raise ConfigError(f"{path} has no block for env {env_id!r}; it has {envs}")
    block = data[env_id]
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {env_id} must be a mapping, got {block!r}")
    extras = (data.get(EXTRAS_KEY) or {}).get(env_id) or {}
    if not isinstance(extras, dict) or set(extras) - EXTRA_KEYS:
        raise ConfigError(f"{path}: {EXTRAS_KEY}.{env_id} may hold {sorted(EXTRA_KEYS)}, got {extras!r}")
    cfg = {k: v for k, v in block.items() if k in ZOO_RUN_KEYS}
    hyperparams = {k: v for k, v in block.items() if k not in ZOO_RUN_KEYS}
    allowed = hyperparameter_names(algo)
    unknown = set(hyperparams) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} for {env_id}: neither a {algo} hyperparameter "
                          f"nor one of {sorted(ZOO_RUN_KEYS)}")
    parse_schedules(hyperparams, f"{path}: {env_id}")  # fail early, keep the strings
    wrapper = cfg.pop("env_wrapper", None)
    if wrapper not in (None, FLAT_WRAPPER):
        raise ConfigError(f"{path}: {env_id}.env_wrapper {wrapper!r} is not supported; allowed: {FLAT_WRAPPER}")
    cfg["flat_actions"] = wrapper == FLAT_WRAPPER
    norm = cfg.get("normalize", False)
    if isinstance(norm, dict) and norm.get("norm_reward", True) and "gamma" in hyperparams:
        # the algorithm's discount for return normalisation, as the zoo does (it only matters there)
        cfg["normalize"] = {**norm, "gamma": hyperparams["gamma"]}
    cfg.update(extras)
    cfg["hyperparams"] = hyperparams
    cfg.setdefault("policy", "MlpPolicy")
    cfg.setdefault("n_envs", 1)
    cfg.setdefault("normalize", False)
    cfg.setdefault("env_kwargs", {})
    cfg.setdefault("eval_freq", 10_000)
    cfg.setdefault("eval_episodes", 8)
    cfg.setdefault("checkpoint_freq", 20_000)
    cfg.setdefault("edp_step_scaling", True)  # papi_env.wrappers.EDPStepScale when reward is edp
    validate_config(cfg, f"{path}: {env_id}")
    return cfg


def hyperparameter_names(algo: str) -> set[str]:
    """The keyword arguments the algorithm's constructor takes (besides policy and env)."""
    import inspect

    return set(inspect.signature(algo_class(algo).__init__).parameters) - {"self", "policy", "env"}


POSITIVE_INT_KEYS = ("n_envs", "eval_freq", "eval_episodes", "checkpoint_freq")


def validate_config(cfg: dict[str, Any], where: str) -> None:
    """The checks every config value passes, from a YAML file or from the command line."""
    for key in (*POSITIVE_INT_KEYS, "n_timesteps"):
        if key not in cfg:
            continue
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{where}.{key} must be a positive integer, got {value!r}")
    if not isinstance(cfg.get("env_kwargs", {}), dict):
        raise ConfigError(f"{where}.env_kwargs must be a mapping of keyword arguments, got {cfg['env_kwargs']!r}")


def effective_checkpoint_freq(cfg: dict[str, Any], total_timesteps: int) -> int:
    """Steps between checkpoints: the config's, but at least one every 10% of the run."""
    return max(1, min(int(cfg["checkpoint_freq"]), math.ceil(total_timesteps / 10)))


def history_ratio(entry: dict) -> float:
    """An evaluations.json entry's score ratio to the threshold rule (older files: speedup_vs_threshold)."""
    return entry["score_vs_threshold"] if "score_vs_threshold" in entry else entry["speedup_vs_threshold"]


class DomainEvalCallback(BaseCallback):
    """Every ``eval_freq`` env steps: run the agent, PAPI's threshold rule and the oracle on the
    same validation episodes; log ``eval/*`` to TensorBoard; keep the best model.

    ``score_vs_threshold`` is the paired ratio of the env's episode score (its objective, higher is
    better: tokens/s, tokens/J, tokens^2/(s J) or penalised tokens/s) to the threshold rule's; on
    latency runs it is also logged as ``speedup_vs_threshold`` (a ratio of tokens/s). ``gap_to_oracle``
    is 1 - score / oracle's score. See RunBoard for the TensorBoard tags."""

    def __init__(self, env_id: str, env_kwargs: dict, eval_freq: int, n_episodes: int, run_dir: Path,
                 n_envs: int, verbose: int = 0, hparams: dict[str, Any] | None = None,
                 on_validation: Callable[[dict], None] | None = None) -> None:
        super().__init__(verbose)
        self.on_validation = on_validation
        self.env_id, self.env_kwargs, self.run_dir = env_id, env_kwargs, run_dir
        self.hparams = hparams or {}
        self.eval_freq = eval_freq
        self.next_eval = eval_freq
        self.seeds = [VALIDATION_SEED_BASE + i for i in range(n_episodes)]
        self.history_path = run_dir / "evaluations.json"
        self.history: list[dict] = json.loads(self.history_path.read_text()) if self.history_path.exists() else []
        self.best = max((history_ratio(h) for h in self.history), default=-np.inf)

    def _init_callback(self) -> None:
        self.eval_env = gym.make(self.env_id, **self.env_kwargs)
        base = self.eval_env.unwrapped
        self.objective = base.reward_kind
        self.varies_tlp = hasattr(base, "max_tlp")  # the spec variant chooses TLP; elsewhere it is given
        self.tensorboard = RunBoard(self.logger)
        if self.num_timesteps == 0:
            self.tensorboard.config({**self.hparams, "env_kwargs": self.env_kwargs, "validation_seeds": self.seeds})
        threshold = make_policy("threshold", env=self.eval_env)
        self.reference = [run_episode(self.eval_env, threshold, s) for s in self.seeds]
        self.oracle = [run_episode(self.eval_env, Oracle(self.eval_env), s) for s in self.seeds]

    def _agent(self) -> LearnedPolicy:
        venv = self.model.get_env()
        if isinstance(venv, VecNormalize) and venv.norm_obs:
            return LearnedPolicy(self.model, venv.obs_rms, venv.clip_obs, venv.epsilon)
        return LearnedPolicy(self.model)

    def evaluate_now(self) -> dict:
        agent = self._agent()
        eps = episodes_of(self.eval_env, self.env_id, self.env_kwargs, agent, self.seeds, batched=True)
        ratio = np.mean([e["score"] / r["score"] for e, r in zip(eps, self.reference, strict=True)])
        to_oracle = np.mean([e["score"] / o["score"] for e, o in zip(eps, self.oracle, strict=True)])
        entry = {
            "timesteps": int(self.num_timesteps),
            "wall_s": time.perf_counter() - self._t0,
            "score_vs_threshold": float(ratio),
            "gap_to_oracle": float(1.0 - to_oracle),
            "tokens_per_s": float(np.mean([e["tokens_per_s"] for e in eps])),
            "threshold_tokens_per_s": float(np.mean([r["tokens_per_s"] for r in self.reference])),
            "gpu_share": float(np.mean([e["gpu_share"] for e in eps])),
            "joules_per_token": float(np.mean([e["joules_per_token"] for e in eps])),
            "mean_tlp": float(np.mean([e["mean_tlp"] for e in eps])),
            "missed_target_share": float(np.mean([e["misses"] for e in eps])),
        }
        if self.objective == "latency":
            entry["speedup_vs_threshold"] = entry["score_vs_threshold"]  # a ratio of tokens/s: a speedup
        self.tensorboard.scalars(entry, self.num_timesteps, self.objective, self.varies_tlp)
        self.logger.dump(self.num_timesteps)
        if ratio > self.best:
            self.best = float(ratio)
            save_agent(self.model, self.run_dir / "best_model.zip")
        self.history.append(entry)
        write_json(self.history_path, self.history)
        if self.on_validation is not None:
            self.on_validation(entry)
        if self.verbose:
            print(f"[eval] {entry['timesteps']:>8d} steps: {ratio:.4f}x threshold's score, "
                  f"gap to oracle {entry['gap_to_oracle']:.4f}, GPU share {entry['gpu_share']:.2f}")
        return entry

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        # on the env-step count, not on this callback's calls, so a resumed run evaluates where an
        # uninterrupted one does
        self.next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate_now()
            self.next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1]["timesteps"] != self.num_timesteps:
            self.evaluate_now()
        last = self.history[-1]
        self.tensorboard.hparams({**self.hparams, "objective": self.objective}, {
            "hparams/final_score_vs_threshold": last["score_vs_threshold"],
            "hparams/best_score_vs_threshold": max(history_ratio(h) for h in self.history),
            "hparams/final_gap_to_oracle": last["gap_to_oracle"]})


def save_agent(model: Any, path: Path) -> None:
    """Save the model and, if it has one, its VecNormalize statistics beside it, each atomically
    (statistics first, so that a model file never lacks the statistics it was saved with)."""
    venv = model.get_env()
    if isinstance(venv, VecNormalize):
        atomic_file(vecnormalize_path(path), lambda tmp: venv.save(str(tmp)))
    atomic_file(Path(path), lambda tmp: model.save(tmp))


class RolloutProgressBar(ProgressBarCallback):
    """SB3's progress bar, with its total the steps the run will really take: on-policy algorithms
    collect whole rollouts (n_steps x n_envs), so 60,000 asked steps are 61,440 taken."""

    def _on_training_start(self) -> None:
        remaining = self.locals["total_timesteps"] - self.model.num_timesteps
        rollout = getattr(self.model, "n_steps", 0) * self.training_env.num_envs
        if rollout:
            remaining = math.ceil(remaining / rollout) * rollout
        self.pbar = tqdm(total=remaining)


class RunCheckpoint(BaseCallback):
    """Exact checkpoints (experiments.checkpoints) at rollout boundaries, at least every ``freq``
    env steps, and at the end of training."""

    def __init__(self, run_dir: Path, freq: int, base_venv: Any, replay_buffer: bool) -> None:
        super().__init__(0)
        self.run_dir, self.freq, self.base_venv, self.replay_buffer = run_dir, freq, base_venv, replay_buffer
        self.last = None

    def _save(self) -> None:
        venv = self.model.get_env()
        save_checkpoint(self.run_dir, self.model, self.base_venv,
                        venv if isinstance(venv, VecNormalize) else None, self.replay_buffer)
        self.last = self.model.num_timesteps

    def _on_training_start(self) -> None:
        self.last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps - self.last >= self.freq:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.model.num_timesteps != self.last or not checkpoints(self.run_dir):
            self._save()


IDENTITY_IGNORED = ("n_timesteps",)  # a resumed run may be given more steps


def run_identity(algo: str, env_id: str, cfg: dict, seed: int) -> dict:
    """What makes two runs the same experiment: algorithm, env, seed and the resolved config
    (JSON-normalised), less IDENTITY_IGNORED."""
    config = {k: v for k, v in cfg.items() if k not in IDENTITY_IGNORED}
    return json.loads(json.dumps({"algo": algo, "env": env_id, "seed": seed, "config": config}))


def identity_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identities."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} in the run, {b!r} now)")
    return out


class RunDirError(ValueError):
    """A run directory that a run may not start in or resume from."""


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_record(algo: str, env_id: str, cfg: dict, seed: int, total: int, command: list[str] | None) -> dict:
    import stable_baselines3
    import torch

    try:
        from importlib.metadata import version

        pkg = version("papi-gym")
    except Exception:
        pkg = "unknown"
    return {
        "algo": algo, "env": env_id, "seed": seed, "total_timesteps": total, "config": cfg,
        "identity": run_identity(algo, env_id, cfg, seed),
        "command": command,  # None when a script (demo, report, beyond, ...) called train()
        "papi_gym_version": pkg, "git_commit": git_commit(),
        "versions": {"python": platform.python_version(), "stable_baselines3": stable_baselines3.__version__,
                     "torch": torch.__version__, "gymnasium": gym.__version__, "numpy": np.__version__},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def make_env(env_id: str, cfg: dict, seed: int) -> Any:
    """The training environments: ``cfg["vec"]`` 'native' (default: one array core stepping all
    n_envs, experiments.vec_env; envs without a native form get a DummyVecEnv), or 'dummy' /
    'subproc' (SB3's DummyVecEnv / SubprocVecEnv of
    scalar environments). Environment i is seeded with seed + i either way, so all three give the
    same episodes."""
    # make_vec_env asks for render_mode='rgb_array' unless told otherwise; these envs render text only.
    env_kwargs = {"render_mode": None, **cfg["env_kwargs"]}
    step_scaling = env_kwargs.get("reward") == "edp" and cfg.get("edp_step_scaling", True)
    kind = cfg.get("vec", "native")
    if kind not in VEC_KINDS:
        raise ConfigError(f"vec must be one of {VEC_KINDS}, got {kind!r}")
    if kind == "native" and env_id not in papi_env.VECTOR_ENTRY_POINTS:
        kind = "dummy"  # no native vector form (PapiServe-v0): scalar envs in a DummyVecEnv
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


def _truncate_history(run_dir: Path, steps: int, ckpt: Path) -> None:
    """Make the run's records end at the checkpoint's step: evaluations after it go, and the best
    model is the one the checkpoint saw."""
    history_path = run_dir / "evaluations.json"
    if history_path.exists():
        history = [h for h in json.loads(history_path.read_text()) if h["timesteps"] <= steps]
        write_json(history_path, history)
    for name in ("best_model.zip", "best_model_vecnormalize.pkl"):
        if (ckpt / name).is_file():
            atomic_copy(ckpt / name, run_dir / name)
        else:
            (run_dir / name).unlink(missing_ok=True)
    (run_dir / "final_model.zip").unlink(missing_ok=True)
    (run_dir / "final_model_vecnormalize.pkl").unlink(missing_ok=True)


def _logger(run_dir: Path, purge_step: int | None) -> Any:
    """SB3 logger writing TensorBoard events to ``<run>/tb``; on resume, events at or after
    ``purge_step`` from the interrupted stretch are discarded (TensorBoard's purge_step)."""
    from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    tb = run_dir / "tb"
    tb.mkdir(parents=True, exist_ok=True)
    fmt = TensorBoardOutputFormat(str(tb))
    if purge_step is not None:
        fmt.writer.close()
        fmt.writer = SummaryWriter(log_dir=str(tb), purge_step=purge_step)
    return Logger(folder=str(tb), output_formats=[fmt])


def prepare_run_dir(run_dir: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a fresh run needs an empty directory (or ``overwrite``, which clears
    it); a resumed run needs the same identity as the one recorded in run.json."""
    if resume:
        record = run_dir / "run.json"
        if not record.is_file():
            raise RunDirError(f"--resume: {run_dir} has no run.json; nothing to resume")
        try:
            old = json.loads(record.read_text())["identity"]
        except (ValueError, KeyError):
            raise RunDirError(f"--resume: {record} is not a papi-gym run record (no identity)") from None
        diff = identity_differences(old, identity)
        if diff:
            raise RunDirError(f"--resume: {run_dir} was trained with different settings: " + "; ".join(diff))
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(f"run directory {run_dir} is not empty (an earlier run?); pass --overwrite to "
                              "clear it, --resume to continue it, or choose another --logdir/--run-name")
        shutil.rmtree(run_dir)


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


def train(algo: str, env_id: str, cfg: dict, total_timesteps: int, seed: int, logdir: Path,
          resume: bool = False, run_name: str | None = None, progress_bar: bool = True, verbose: int = 1,
          overwrite: bool = False, command: list[str] | None = None, torch_threads: int | None = 1,
          on_validation: Callable[[dict], None] | None = None) -> Path:
    """Train (or resume) one agent; return its run directory.

    ``on_validation(entry)`` is called after every validation with its evaluations.json entry (a
    sweep reports it to Ray Tune).

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
        _truncate_history(run_dir, steps, ckpt)
        model = cls.load(ckpt / "model.zip", env=venv, device="cpu", force_reset=False)
        if off_policy:
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        with open(ckpt / "rng.pkl", "rb") as fh:
            restore_rng_state(model, pickle.load(fh), venv if cfg["normalize"] else None)
        model.set_logger(_logger(run_dir, purge_step=steps))
        if verbose:
            print(f"resuming {run_dir} from {steps} steps")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "run.json", run_record(algo, env_id, cfg, seed, total_timesteps, command))
        base_venv = make_env(env_id, cfg, seed)
        venv = normalized(base_venv, cfg)
        model = cls(cfg["policy"], venv, seed=seed, device="cpu", verbose=0,
                    **parse_schedules(cfg["hyperparams"], f"{env_id}.hyperparams"))
        model.set_logger(_logger(run_dir, purge_step=None))
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
    if remaining > 0:
        model.learn(remaining, callback=callbacks, reset_num_timesteps=not resume)
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
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    try:
        positive(args.torch_threads, "--torch-threads")
        cfg = load_config(args.algo, args.env, args.config)
        for key in POSITIVE_INT_KEYS:
            value = getattr(args, key)
            if value is not None:
                cfg[key] = positive(value, "--" + key.replace("_", "-"))
        cfg["env_kwargs"] = {**cfg["env_kwargs"], **parse_env_kwargs(args.env_kwargs)}
        cfg["vec"] = args.vec
        total = args.total_timesteps if args.total_timesteps is not None else cfg.get("n_timesteps", 50_000)
        cfg["n_timesteps"] = positive(total, "--total-timesteps")
        check_env_kwargs(args.env, {"render_mode": None, **cfg["env_kwargs"]})
        command = [sys.executable, "-m", "experiments.train", *(sys.argv[1:] if argv is None else argv)]
        train(args.algo, args.env, cfg, total, args.seed, args.logdir, args.resume, args.run_name,
              progress_bar=not args.no_progress, overwrite=args.overwrite, command=command,
              torch_threads=args.torch_threads)
    except (ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
