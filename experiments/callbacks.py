"""The callbacks every training run uses: validation against PAPI's rule and the oracle (with
TensorBoard scalars and the best model), exact checkpoints, and a progress bar that knows rollouts.

Validation episodes use seeds VALIDATION_SEED_BASE + i, disjoint from the final evaluation's
(experiments.evaluate.EVAL_SEED_BASE + ...).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback, tqdm
from stable_baselines3.common.vec_env import VecNormalize

import papi_env  # noqa: F401  (registers the environments)
from agents.learned import LearnedPolicy
from agents.policies import Oracle, make_policy
from experiments import stats
from experiments.checkpoints import checkpoints, save_checkpoint
from experiments.evaluate import episodes_of, run_episode
from experiments.io import write_json
from experiments.run_records import save_agent
from experiments.tensorboard_log import RunBoard

VALIDATION_SEED_BASE = 500_000


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
        scores = [e["score"] for e in eps]
        ratio = np.nanmean(stats.paired_ratios(scores, [r["score"] for r in self.reference]))
        to_oracle = np.nanmean(stats.paired_ratios(scores, [o["score"] for o in self.oracle]))
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
