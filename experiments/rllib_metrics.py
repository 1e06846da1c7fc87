"""The episode score in RLlib's metrics: a callback for RLlib users of papi_env.

    import papi_env
    from ray.rllib.algorithms.ppo import PPOConfig
    from experiments.rllib_metrics import ScoreMetrics

    papi_env.register_ray_envs()          # every env id, found by name on remote env runners too
    config = (PPOConfig().environment("papi_env/PapiSchedule-v0", env_config={"reward": "edp"})
              .callbacks(ScoreMetrics))
    result = config.build_algo().train()
    result["env_runners"]["score"]        # mean episode score (the env's objective, higher is better)

Each finished episode logs its ``info["score"]`` (and its ``joules_per_token`` and ``gpu_share``
when the env gives them) as the mean over the iteration's episodes. Needs ray[rllib].
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

LOGGED = ("score", "joules_per_token", "gpu_share")


class ScoreMetrics(RLlibCallback):
    """Logs each finished episode's score (and energy per token, GPU share) to RLlib's metrics."""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        info = episode.get_infos(-1)
        for key in LOGGED:
            if key in info and metrics_logger is not None:
                metrics_logger.log_value(key, float(info[key]), reduce="mean")
