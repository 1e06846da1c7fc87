"""Issue 12: every bad input is a clear error (never NaN, a traceback or a silent oddity);
capacity is enforced; hypothesis fuzzes env kwargs and system overrides."""

import json
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import papi_env  # noqa: F401
from agents.policies import make_policy
from agents.rules import static_placement
from experiments.io import write_json
from hardware.specs import SpecError, load_system
from hardware.systems import CapacityError, CostModel
from hardware.workloads import WorkloadError, load_lengths_csv
from sim.static import run_batch

ROOT = Path(__file__).resolve().parent.parent


def test_kv_capacity_is_enforced():
    cm = CostModel("papi", "llama-65b")
    lin, lout = [200_000] * 256, [10] * 256
    with pytest.raises(CapacityError, match=r"needs .* GB of KV cache .* holds 960.0 GB"):
        run_batch(cm, lin, lout, 1, static_placement("pim"))
    assert cm.batch_prefix_that_fits(lin, lout) == int(960e9 // (200_010 * cm.model.kv_bytes_per_token))


def test_weights_must_fit():
    huge = {"layers": 800, "hidden": 16384, "heads": 128, "ffn": 65536}
    with pytest.raises(CapacityError, match=r"GB of weights; system 'papi' holds 360 GB"):
        CostModel("papi", huge)


def test_capacity_overrides_change_the_outcome():
    small = load_system({"attention_pim": {"capacity_bytes": 1e8}})  # 6 GB in 60 stacks
    env = gym.make("papi_env/PapiSchedule-v0", system=small, batch_size=64)
    with pytest.raises(CapacityError):
        env.reset(seed=0)
    admit = gym.make("papi_env/PapiSchedule-v0", system=small, batch_size=64, on_over_capacity="admit")
    admit.reset(seed=0)
    assert admit.unwrapped.batch.size < 64


@pytest.mark.parametrize("kwargs, message", [
    ({"miss_penalty": math.inf}, "miss_penalty must be a finite number"),
    ({"latency_target_s": math.nan}, "latency_target_s must be a finite number"),
    ({"model": []}, "model must be one value or a non-empty list"),
    ({"dataset": []}, "dataset must be one value or a non-empty list"),
    ({"batch_size": 16.0}, "batch_size must be an integer"),
    ({"tlp": 2.0}, "tlp must be an integer"),
    ({"tlp": [[0, 2], [3]]}, r"\[iteration, tlp\] integer pairs"),
    ({"tlp": [[0, 2], [0, 3]]}, "iterations must increase"),
    ({"on_over_capacity": "drop"}, "on_over_capacity must be one of"),
])
def test_env_kwargs_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("papi_env/PapiSchedule-v0", **kwargs)


def test_spec_token_reward_must_be_finite():
    with pytest.raises(ValueError, match="token_reward must be a finite number"):
        gym.make("papi_env/PapiSpecSchedule-v0", token_reward=math.nan)


def test_numpy_integers_and_stepping_after_truncation():
    env = gym.make("papi_env/PapiSchedule-v0", max_steps=np.int64(2), batch_size=64).unwrapped
    env.reset(seed=0)
    env.step(0)
    _, _, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and "score" in info
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(0)


@pytest.mark.parametrize("changes, message", [
    ({"num_gpus": 2.5}, "whole number"), ({"fc_stacks": 0.5}, "whole number"),
    ({"attention_stacks": 59.5}, "whole number"), ({"num_gpus": 1e30}, "<= 1e\\+06"),
])
def test_non_physical_overrides_fail(changes, message):
    with pytest.raises(SpecError, match=message):
        load_system(changes)


@pytest.mark.parametrize("spec, env_id, message", [
    ("threshold:nan", "papi_env/PapiSchedule-v0", "finite alpha"),
    ("threshold:-3", "papi_env/PapiSchedule-v0", "finite alpha"),
    ("fixed-tlp:0", "papi_env/PapiSpecSchedule-v0", r"in \[1, 8\]"),
    ("fixed-tlp:99", "papi_env/PapiSpecSchedule-v0", r"in \[1, 8\]"),
    ("fixed-tlp:2", "papi_env/PapiSchedule-v0", "PapiSpecSchedule-v0 or PapiServe-v0 lets a scheduler decide"),
    ("split-table", "papi_env/PapiSchedule-v0", "PapiSplitSchedule-v0 lets a scheduler decide"),
])
def test_policy_specs_fail_clearly(spec, env_id, message):
    with pytest.raises(ValueError, match=message):
        make_policy(spec, env=gym.make(env_id))


def test_csv_byte_order_mark_and_huge_numbers(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefflin,lout\n10,20\n".encode())
    assert load_lengths_csv(bom).rows.tolist() == [[10, 20]]
    big = tmp_path / "big.csv"
    big.write_text("lin,lout\n10,20\n" + "9" * 40 + ",5\n")
    with pytest.raises(WorkloadError, match=r"big.csv:3: lengths must be <="):
        load_lengths_csv(big)


def test_json_results_are_strict(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "x.json", {"a": math.nan})
    assert not list(tmp_path.iterdir())


def test_truncated_model_is_a_clear_error(tmp_path):
    for content in (b"", b"PK\x03\x04 half"):
        path = tmp_path / "m.zip"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="cannot load a ppo agent"):
            make_policy(f"ppo:{path}")


@pytest.mark.parametrize("args, message", [
    (["experiments.evaluate", "--env-kwargs", '{"bogus": 1}', "--episodes", "1"], "unexpected keyword"),
    (["experiments.evaluate", "--env-kwargs", "[1]"], "must be a JSON object"),
    (["experiments.evaluate", "--out", "{file}"], "is a file"),
    (["experiments.evaluate", "--episodes", "0"], "--episodes must be a positive integer"),
    (["experiments.beyond", "--env-kwargs", '{"batch_size": 16.0}', "--out", "{dir}"], "batch_size"),
    (["experiments.demo", "--episodes", "0", "--out", "{dir}"], "--episodes must be a positive integer"),
    (["experiments.report", "--episodes", "0", "--out", "{dir}"], "--episodes must be a positive integer"),
    (["experiments.bench", "--steps", "0"], "--steps must be a positive integer"),
    (["experiments.transfer", "--variants", "schedule", "--out", "{dir}"], "unknown or missing ['schedule']"),
    (["experiments.transfer", "--num-cpus", "0", "--out", "{dir}"], "--num-cpus must be a positive integer"),
    (["experiments.transfer", "--held-out-size", "-1", "--out", "{dir}"], "--held-out-size must be >= 0"),
    (["hardware.calibrate", "--max-tokens", "0"], "--max-tokens must be a positive integer"),
])
def test_scripts_fail_in_one_line(tmp_path, args, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = [a.replace("{file}", str(afile)).replace("{dir}", str(tmp_path / "out")) for a in args]
    res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


ENV_KWARGS = st.fixed_dictionaries({}, optional={
    "batch_size": st.one_of(st.integers(-2, 300), st.floats(allow_nan=True), st.lists(st.integers(-1, 70), max_size=3)),
    "tlp": st.one_of(st.integers(-1, 20), st.floats(allow_nan=True), st.lists(st.integers(0, 9), max_size=3)),
    "miss_penalty": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
    "latency_target_s": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    "acceptance_rate": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    "reward": st.sampled_from(["latency", "energy", "edp", "latency_target", "speed"]),
    "max_steps": st.one_of(st.integers(-1, 50), st.floats(allow_nan=True)),
    "system": st.one_of(st.sampled_from(["papi", "pimonly_papi", "a100_attacc", "nope"]), st.fixed_dictionaries(
        {}, optional={"num_gpus": st.one_of(st.integers(-1, 10), st.floats(allow_nan=True, allow_infinity=True)),
                      "fc_stacks": st.one_of(st.integers(-1, 64), st.floats(allow_nan=True)),
                      "attention_links": st.integers(-1, 8),
                      "attention_pim": st.fixed_dictionaries(
                          {}, optional={"capacity_bytes": st.floats(allow_nan=True, allow_infinity=True)})})),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENV_KWARGS, st.sampled_from(["papi_env/PapiSchedule-v0", "papi_env/PapiKernelSchedule-v0",
                                    "papi_env/PapiSpecSchedule-v0"]))
def test_fuzz_clear_error_or_finite_rewards(kwargs, env_id):
    try:
        env = gym.make(env_id, **kwargs)
        env.reset(seed=0)
        for _ in range(5):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(reward)
            if terminated or truncated:
                assert np.isfinite(info["score"])
                break
    except ValueError as err:  # SpecError, CapacityError, WorkloadError are ValueErrors
        assert str(err)
    json.dumps(kwargs, default=str)


@pytest.mark.parametrize("script", ["experiments.train", "experiments.demo", "experiments.beyond"])
def test_missing_rl_extra_is_one_line(script):
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['x']; "
            f"runpy.run_module('{script}', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "pip install -e '.[rl]'" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_license_matches_pyproject():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


def test_threshold_without_a_system_to_calibrate_for_is_an_error():
    """make_policy('threshold') used to calibrate for the default system silently (alpha 32 where
    an H100 x4 GPT-3 175B env needs 48)."""
    with pytest.raises(ValueError, match=r"pass env= .*or model= and system=.*threshold:ALPHA"):
        make_policy("threshold")
    h100 = gym.make("papi_env/PapiSchedule-v0", model="gpt3-175b",
                    system={"base": "papi", "gpu": "H100", "num_gpus": 4})
    assert make_policy("threshold", env=h100).alpha != make_policy("threshold", model="llama-65b", system="papi").alpha
    assert make_policy("threshold:48").alpha == 48


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a directory nobody can write: Linux's /proc")
def test_output_directories_are_checked_for_writability_before_any_work():
    from experiments.cli import UsageError, check_output_dir

    with pytest.raises(UsageError, match="cannot write there"):
        check_output_dir(Path("/proc"))
    out = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--episodes", "1", "--out", "/proc"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "cannot write there" in out.stderr


@pytest.mark.parametrize("flags", [["--rates", "inf"], ["--rates", "1,nan"], ["--cv", "inf"],
                                   ["--acceptance-rate", "nan"]])
def test_serve_rejects_non_finite_numbers(flags, tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.serve", *flags, "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "finite" in out.stderr, out.stderr


def test_serving_env_bounds_requests_and_refuses_steps_after_truncation(tmp_path):
    with pytest.raises(ValueError, match="requests must be at most 1,000,000"):
        gym.make("papi_env/PapiServe-v0", requests=10**9)
    env = gym.make("papi_env/PapiServe-v0", max_steps=3, requests=64, warmup=0).unwrapped
    env.reset(seed=0)
    for _ in range(3):
        *_, truncated, _ = env.step(np.array([1, 0, 4]))
    assert truncated
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(np.array([1, 0, 4]))
    trace = tmp_path / "bom.csv"  # a trace saved by a spreadsheet starts with a byte-order mark
    trace.write_text("arrival_s,lin,lout\n0.0,10,5\n0.1,12,7\n", encoding="utf-8-sig")
    served = gym.make("papi_env/PapiServe-v0", trace=str(trace), requests=2, warmup=0)
    served.reset(seed=0)


def test_vector_envs_refuse_steps_after_close_and_absurd_sizes():
    vec = gym.make_vec("papi_env/PapiSchedule-v0", num_envs=2, vectorization_mode="vector_entry_point")
    vec.reset(seed=0)
    vec.close()
    with pytest.raises(RuntimeError, match="closed"):
        vec.step(np.array([1, 1]))
    with pytest.raises(ValueError, match=r"num_envs must be an integer in \[1, 65,536\]"):
        gym.make_vec("papi_env/PapiSchedule-v0", num_envs=10**6, vectorization_mode="vector_entry_point")


def test_train_device_flag_is_checked(tmp_path):
    pytest.importorskip("torch")
    import torch

    bad = ["tpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad:
        out = subprocess.run([sys.executable, "-m", "experiments.train", "--device", device, "--total-timesteps", "64",
                              "--logdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 2 and "--device" in out.stderr, out.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("flags, message", [(["--loads", "0.5,inf"], "--loads"), (["--loads", "x"], "--loads"),
                                            (["--episodes", "0"], "--episodes"),
                                            (["--train-seeds", "-1"], "--train-seeds"),
                                            (["--requests", "8", "--warmup", "8"], "--warmup"),
                                            (["--algos", "dqn"], "--algos"),
                                            (["--kv-policy", "swap"], "kv_policy must be one of"),
                                            (["--token-budget", "0"], "token_budget must be None"),
                                            (["--queue-order", "lifo"], "queue_order must be one of"),
                                            (["--shaping", "remaining"], "shaping 'remaining' shapes the latency")])
def test_serve_goodput_rejects_bad_flags(flags, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.serve_goodput", *flags, "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr and not list(tmp_path.iterdir())
