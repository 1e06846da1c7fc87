"""The three recipes of docs/ARCHITECTURE.md, done as a user would: a rule, a hardware preset, a variant."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import papi_env  # noqa: F401
from agents.policies import make_policy
from agents.rules import Bound
from experiments.evaluate import evaluate
from hardware.calibrate import fc_on_gpu
from papi_env.base import PapiBaseEnv
from papi_env.schedule_env import ScheduleCore
from papi_env.vector import PapiVectorEnv


class HalfAlpha(Bound):
    """A toy rule: PAPI's test at half the calibrated crossover (FC moves to the GPUs sooner)."""

    name = "half-alpha"

    def act(self, env):
        return int(fc_on_gpu(env.batch.live, env.tlp, env.alpha() / 2))


def test_a_rule_defined_here_is_evaluated_against_papis_rule():
    result = evaluate("papi_env/PapiSchedule-v0", ["threshold", "oracle", HalfAlpha()], episodes=4, seed=0)
    rows = result["policies"]
    assert set(rows) == {"threshold", "oracle", "half-alpha"} and rows["half-alpha"]["kind"] == "rule"
    # PAPI's calibrated rule is the per-iteration optimum here: a moved crossover can only lose or tie
    assert rows["half-alpha"]["ratio_vs_threshold"] <= 1.0 + 1e-12
    assert rows["half-alpha"]["gpu_share"] >= rows["threshold"]["gpu_share"]
    assert rows["oracle"]["ratio_vs_threshold"] >= 1.0 - 1e-12


def test_a_hardware_preset_from_a_file(tmp_path):
    path = tmp_path / "h100x4.json"
    path.write_text(json.dumps({"base": "papi", "gpu": "H100", "num_gpus": 4}))
    env = gym.make("papi_env/PapiSchedule-v0", system=str(path), model="gpt3-175b", batch_size=16)
    base = gym.make("papi_env/PapiSchedule-v0", model="gpt3-175b", batch_size=16)
    env.reset(seed=0)
    base.reset(seed=0)
    assert env.unwrapped.cost_model.system.num_gpus == 4
    assert env.unwrapped.alpha() != base.unwrapped.alpha()  # recalibrated for the new GPUs
    rule = make_policy("threshold", env)
    assert rule.alpha == env.unwrapped.alpha()
    result = evaluate("papi_env/PapiSchedule-v0", ["threshold", "always-gpu"], episodes=2, seed=0,
                      env_kwargs={"system": str(path), "model": "gpt3-175b", "batch_size": 16})
    assert result["policies"]["always-gpu"]["ratio_vs_threshold"] <= 1.0 + 1e-12


OBS = 9


class AlphaCore(ScheduleCore):
    """A toy variant: PapiSchedule-v0 whose observation also shows the calibrated crossover."""

    obs_size = OBS

    def single_spaces(self):
        return spaces.Discrete(2), spaces.Box(0.0, 1.0, shape=(OBS,), dtype=np.float32)

    def _extra_features(self, rlp, sum_ctx):
        return [np.log2(self.alpha_array() + 1.0) / 12.0]


class AlphaScheduleEnv(PapiBaseEnv):
    core_class = AlphaCore
    variant = "schedule"  # PAPI's rule and the oracle treat it as the FC-placement variant

    def action_masks(self):
        return self.core.action_masks()[0].copy()

    def candidate_actions(self):
        return [a for a in (0, 1) if self.action_masks()[a]]


class AlphaScheduleVectorEnv(PapiVectorEnv):
    core_class = AlphaCore


def test_a_variant_registered_here_steps_scalar_and_vector_alike():
    env_id = "papi_env/TestAlphaSchedule-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=AlphaScheduleEnv, vector_entry_point=AlphaScheduleVectorEnv)
    env = gym.make(env_id, batch_size=16)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (OBS,) and obs[-1] > 0
    result = evaluate(env_id, ["threshold", "oracle", "always-pim"], episodes=2, seed=0, env_kwargs={"batch_size": 16})
    assert result["policies"]["oracle"]["ratio_vs_threshold"] >= 1.0 - 1e-12
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", batch_size=16)
    sync = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", batch_size=16)
    a, b = vec.reset(seed=4)[0], sync.reset(seed=4)[0]
    for _ in range(30):
        assert np.array_equal(a, b)
        a, b = vec.step(np.ones(3, dtype=np.int64))[0], sync.step(np.ones(3, dtype=np.int64))[0]
