"""hardware_features=True: the observation ends with the episode's system and model descriptor."""

import gymnasium as gym
import numpy as np
import pytest

import papi_env
from hardware.calibrate import DESCRIPTOR_SIZE, descriptor
from hardware.systems import CostModel

H100X4 = {"base": "papi", "gpu": "H100", "num_gpus": 4}


@pytest.mark.parametrize("env_id", list(papi_env.ENV_IDS))
def test_descriptor_is_appended_constant_and_the_systems_own(env_id):
    plain = gym.make(env_id)
    env = gym.make(env_id, hardware_features=True, system=["papi", H100X4], model=["llama-65b", "gpt3-175b"])
    size = plain.observation_space.shape[0]
    assert env.observation_space.shape == (size + DESCRIPTOR_SIZE,)
    seen = set()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        core = env.unwrapped.core
        cm = core.cost_models[int(core.cm[0])]
        expected = descriptor(cm).astype(np.float32)
        assert np.array_equal(obs[size:], expected) and ((0 <= obs) & (obs <= 1)).all()
        env.action_space.seed(seed)
        for _ in range(5):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
            assert np.array_equal(obs[size:], expected)  # offline knowledge: constant over the episode
        seen.add(tuple(expected))
    assert len(seen) > 1  # different systems and models, different descriptors


def test_descriptors_tell_systems_apart_and_default_observations_are_unchanged():
    a, b = descriptor(CostModel("papi", "gpt3-175b")), descriptor(CostModel(H100X4, "gpt3-175b"))
    assert a.shape == (DESCRIPTOR_SIZE,) and not np.array_equal(a, b)
    assert gym.make("papi_env/PapiSchedule-v0").observation_space.shape == (8,)
    with pytest.raises(ValueError, match="hardware_features must be true or false"):
        gym.make("papi_env/PapiSchedule-v0", hardware_features="yes")


@pytest.mark.parametrize("env_id", ["papi_env/PapiKernelSchedule-v0", "papi_env/PapiSpecSchedule-v0"])
def test_vector_form_equals_sync_with_hardware_features(env_id):
    kwargs = {"hardware_features": True, "system": ["papi", H100X4], "batch_size": [4, 16], "max_steps": 40}
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", **kwargs)
    assert np.array_equal(vec.reset(seed=4)[0], sync.reset(seed=4)[0])
    vec.action_space.seed(1)
    for _ in range(60):
        a = vec.action_space.sample()
        x, y = vec.step(a), sync.step(a)
        for part_x, part_y in zip(x[:4], y[:4], strict=True):
            assert np.array_equal(part_x, part_y)
