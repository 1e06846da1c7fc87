"""A run directory's records: what makes two runs the same experiment (run.json's identity), the
rules for starting or resuming in a directory, the model files (each written atomically), and the
TensorBoard logger that purges an interrupted stretch on resume.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

from agents.learned import vecnormalize_path
from experiments.io import atomic_copy, atomic_file, write_json


def save_agent(model: Any, path: Path) -> None:
    """Save the model and, if it has one, its VecNormalize statistics beside it, each atomically
    (statistics first, so that a model file never lacks the statistics it was saved with)."""
    venv = model.get_env()
    if isinstance(venv, VecNormalize):
        atomic_file(vecnormalize_path(path), lambda tmp: venv.save(str(tmp)))
    atomic_file(Path(path), lambda tmp: model.save(tmp))


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


def truncate_history(run_dir: Path, steps: int, ckpt: Path) -> None:
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


def tensorboard_logger(run_dir: Path, purge_step: int | None) -> Any:
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


def recorded_identity(run_dir: Path) -> dict | None:
    """The identity in ``run_dir``'s run.json (None without one); RunDirError if it has none."""
    record = run_dir / "run.json"
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text())["identity"]
    except (ValueError, KeyError):
        raise RunDirError(f"{record} is not a papi-gym run record (no identity)") from None


def prepare_run_dir(run_dir: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a fresh run needs an empty directory (or ``overwrite``, which clears
    it); a resumed run needs the same identity as the one recorded in run.json."""
    if resume:
        old = recorded_identity(run_dir)
        if old is None:
            raise RunDirError(f"--resume: {run_dir} has no run.json; nothing to resume")
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
