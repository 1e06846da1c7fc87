"""One run configuration: loaded from rl-baselines3-zoo-format YAML, overridden from the command
line or a sweep trial, and validated, in one place (experiments.train, experiments.sweep and every
script that trains read it through here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.learned import ALGOS, algo_class
from experiments.cli import UsageError, check_env_kwargs
from experiments.vec_env import VEC_KINDS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ZOO_RUN_KEYS = {"policy", "n_envs", "n_timesteps", "normalize", "env_kwargs", "env_wrapper"}
EXTRAS_KEY = "papi-gym"
EXTRA_KEYS = {"eval_freq", "eval_episodes", "checkpoint_freq", "edp_step_scaling", "vec"}
FLAT_WRAPPER = "papi_env.wrappers.FlatDiscreteActions"
DEFAULT_TIMESTEPS = 50_000  # a run's env steps when neither the config nor the caller says
RUN_KEYS = ("n_envs", "normalize", "eval_freq", "eval_episodes", "checkpoint_freq", "vec", "n_timesteps", "init_model")
"""Config keys an override may set besides the algorithm's hyperparameters and ``env_kwargs.<name>``."""


class ConfigError(UsageError):
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
    cfg.setdefault("n_timesteps", DEFAULT_TIMESTEPS)
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
    if cfg.get("vec", "native") not in VEC_KINDS:
        raise ConfigError(f"{where}.vec must be one of {list(VEC_KINDS)}, got {cfg['vec']!r}")
    norm = cfg.get("normalize", False)
    if not isinstance(norm, (bool, dict)):
        raise ConfigError(f"{where}.normalize must be true, false or a mapping of VecNormalize arguments, got {norm!r}")
    for key in SCHEDULED_HYPERPARAMS:
        value = cfg.get("hyperparams", {}).get(key)
        if value is not None and not isinstance(value, str) and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise ConfigError(f"{where}.{key} must be a positive number or 'lin_<positive number>', got {value!r}")
    init = cfg.get("init_model")
    if init is not None and not (isinstance(init, str) and init.endswith(".zip") and Path(init).is_file()):
        raise ConfigError(f"{where}.init_model must be the path of a saved model (.zip) to fine-tune, got {init!r}")
    parse_schedules(cfg.get("hyperparams", {}), where)




def with_overrides(cfg: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of ``cfg`` with ``overrides`` laid over it, validated.

    A key of RUN_KEYS sets that config value; ``env_kwargs.<name>`` sets one env keyword argument;
    ``env_kwargs`` (a mapping) is merged over the config's; any other key must be one of the
    algorithm's hyperparameters (``cfg["algo"]`` is not stored, so the caller's ``algo`` check is
    done by :func:`check_overrides`). ``seed`` is ignored (a run's seed is not part of its config).
    """
    cfg = {**cfg, "hyperparams": dict(cfg["hyperparams"]), "env_kwargs": dict(cfg["env_kwargs"])}
    for key, value in overrides.items():
        if key == "seed":
            continue
        if key == "env_kwargs":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.env_kwargs must be a mapping of keyword arguments, got {value!r}")
            cfg["env_kwargs"].update(value)
        elif key.startswith("env_kwargs."):
            cfg["env_kwargs"][key.removeprefix("env_kwargs.")] = value
        elif key in RUN_KEYS:
            cfg[key] = value
        else:
            cfg["hyperparams"][key] = value
    validate_config(cfg, where)
    return cfg


def check_overrides(algo: str, keys: Any, where: str) -> None:
    """Every key of ``keys`` is one :func:`with_overrides` accepts for ``algo``, else a ConfigError
    naming the unknown ones and what is allowed."""
    allowed = hyperparameter_names(algo) | set(RUN_KEYS) | {"env_kwargs"}
    unknown = sorted(k for k in keys if k not in allowed and not k.startswith("env_kwargs.") and k != "seed")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}: neither a {algo} hyperparameter nor one of "
                          f"{sorted(RUN_KEYS) + ['env_kwargs']}")


def resolve_config(algo: str, env_id: str, path: str | Path | None = None,
                   overrides: dict[str, Any] | None = None, where: str = "command line",
                   build_env: bool = True) -> dict[str, Any]:
    """The one way a script gets a run's configuration: the YAML block of ``env_id`` (default
    configs/<algo>.yaml), ``overrides`` laid over it, every value validated, and (with
    ``build_env``) the environment built once with the resulting env kwargs."""
    cfg = load_config(algo, env_id, path)
    if overrides:
        check_overrides(algo, overrides, where)
        cfg = with_overrides(cfg, overrides, where)
    if build_env:
        check_env_kwargs(env_id, {"render_mode": None, **cfg["env_kwargs"]}, f"{where} env_kwargs")
    return cfg
