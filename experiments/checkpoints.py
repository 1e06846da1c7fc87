"""Exact, atomic training checkpoints.

A checkpoint is a directory ``checkpoints/step_<12 digits>/`` that appears only when complete: its
files are written into a hidden temp directory, each fsynced, then the directory is renamed into
place (a kill at any moment leaves either the old set of checkpoints or the new one, never a
half-written checkpoint). It holds everything a run needs to continue exactly as if it had not
stopped:

- ``model.zip``: the SB3 model (parameters, optimiser, ``num_timesteps``, the last observation);
- ``envs.pkl``: the training environments themselves (their batches, RNGs, Monitor counters);
- ``vecnormalize.pkl``: the observation/return normalisation statistics, when the run normalises;
- ``replay_buffer.pkl``: off-policy algorithms' replay buffer;
- ``rng.pkl``: the global torch, numpy and Python RNG states and the action space's RNG (SB3's
  ``load`` reseeds all of them);
- ``best_model.zip`` (+ ``best_model_vecnormalize.pkl``): the run's best model so far, so that
  resuming restores the best model of the history it keeps;
- ``manifest.json``: the step count and the size of every file, written last.

Checkpoints are taken at rollout boundaries (after the policy update, before the next rollout),
where no partial rollout is in flight. :func:`latest_intact` finds the newest checkpoint whose
manifest matches its files and whose zips open, and says why it skipped any newer one.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.io import fsync_dir, fsync_file

CHECKPOINT_DIR = "checkpoints"
_STEP_DIR = re.compile(r"step_(\d{12})")


def step_dir(run_dir: Path, steps: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{steps:012d}"


def rng_state(model: Any, vecnormalize: Any | None = None) -> dict:
    """The RNG states a resumed run needs, and VecNormalize's running discounted returns (which
    its own save leaves out)."""
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    space_rng = getattr(model.action_space, "_np_random", None)
    if space_rng is not None:
        state["action_space"] = space_rng.bit_generator.state
    if vecnormalize is not None:
        state["vecnormalize_returns"] = np.array(vecnormalize.returns, copy=True)
    return state


def restore_rng_state(model: Any, state: dict, vecnormalize: Any | None = None) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "action_space" in state:
        model.action_space.np_random.bit_generator.state = state["action_space"]
    if vecnormalize is not None and "vecnormalize_returns" in state:
        vecnormalize.returns = state["vecnormalize_returns"]


KILL_HOOK = "PAPI_GYM_TEST_KILL"
"""Test hook: ``after:<steps>`` or ``during:<steps>`` makes the process SIGKILL itself right after
the checkpoint at that step is in place, or halfway through writing it (the kill tests use it to
kill at an exact point; a real kill -9, nothing cleaned up)."""


def _maybe_kill(where: str, steps: int) -> None:
    if os.environ.get(KILL_HOOK) == f"{where}:{steps}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(run_dir: Path, model: Any, base_venv: Any, vecnormalize: Any | None,
                    replay_buffer: bool) -> Path:
    """Write the checkpoint of ``model`` at its ``num_timesteps``; return its directory."""
    import cloudpickle

    steps = int(model.num_timesteps)
    final = step_dir(run_dir, steps)
    if final.exists():
        return final
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    _maybe_kill("during", steps)
    with open(tmp / "envs.pkl", "wb") as fh:
        cloudpickle.dump(base_venv, fh)
    if vecnormalize is not None:
        vecnormalize.save(str(tmp / "vecnormalize.pkl"))
    if replay_buffer:
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    with open(tmp / "rng.pkl", "wb") as fh:
        pickle.dump(rng_state(model, vecnormalize), fh)
    for name in ("best_model.zip", "best_model_vecnormalize.pkl"):
        if (Path(run_dir) / name).is_file():
            shutil.copyfile(Path(run_dir) / name, tmp / name)
    files = {p.name: p.stat().st_size for p in tmp.iterdir()}
    (tmp / "manifest.json").write_text(json.dumps({"steps": steps, "files": files}, indent=1))
    for p in tmp.iterdir():
        fsync_file(p)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    _maybe_kill("after", steps)
    return final


def check(path: Path) -> str | None:
    """Why the checkpoint directory ``path`` cannot be used, or None when it is intact."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return "no manifest (incomplete)"
    try:
        meta = json.loads(manifest.read_text())
        files = meta["files"]
    except (ValueError, KeyError, TypeError):
        return "unreadable manifest"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, the manifest says {size}"
        if name.endswith(".zip"):
            try:
                with zipfile.ZipFile(f) as zf:
                    if zf.testzip() is not None:
                        return f"{name} is corrupt"
            except zipfile.BadZipFile:
                return f"{name} is not a valid zip"
    for needed in ("model.zip", "envs.pkl", "rng.pkl"):
        if needed not in files:
            return f"{needed} is missing"
    return None


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Every checkpoint directory of the run, newest first."""
    found = []
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_DIR.fullmatch(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def latest_intact(run_dir: Path) -> tuple[int, Path, list[str]] | None:
    """(steps, directory, notes about newer checkpoints that were skipped) or None."""
    notes = []
    for steps, path in checkpoints(run_dir):
        problem = check(path)
        if problem is None:
            return steps, path, notes
        notes.append(f"skipping checkpoint at {steps} steps: {problem}")
    return None


def discard_after(run_dir: Path, steps: int) -> None:
    """Remove checkpoints newer than ``steps`` and any temp directories (a resumed run rewrites
    that stretch of history)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    for s, path in checkpoints(run_dir):
        if s > steps:
            shutil.rmtree(path, ignore_errors=True)
    if root.is_dir():
        for p in root.glob(".*.tmp"):
            shutil.rmtree(p, ignore_errors=True)
