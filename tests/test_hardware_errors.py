"""Bad input fails with a message that says what is wrong and what is allowed."""

import json

import numpy as np
import pytest

from agents.rules import static_placement
from hardware.models import get_model
from hardware.specs import SpecError, get_system, load_system
from hardware.systems import CostModel
from hardware.workloads import WorkloadError, get_dataset, load_lengths_csv
from sim.static import load_batch, run_batch


def test_unknown_model():
    with pytest.raises(SpecError, match="unknown model 'llama-7000b'; allowed: .*llama-65b"):
        get_model("llama-7000b")


def test_custom_model_and_missing_field():
    m = get_model({"name": "tiny", "layers": 2, "hidden": 256, "heads": 4, "ffn": 1024})
    assert m.kv_heads == 4
    with pytest.raises(SpecError, match="missing field"):
        get_model({"layers": 2, "hidden": 256})
    with pytest.raises(SpecError, match="layers must be a positive integer"):
        get_model({"layers": 0, "hidden": 256, "heads": 4, "ffn": 1024})


def test_unknown_system_and_field():
    with pytest.raises(SpecError, match="unknown system 'tpu'"):
        get_system("tpu")
    with pytest.raises(SpecError, match=r"unknown field 'gpu.peak_flop'; allowed: .*peak_flops"):
        load_system({"gpu": {"peak_flop": 1e15}})


@pytest.mark.parametrize(
    "override, field",
    [({"gpu": {"memory_bandwidth": -1}}, "memory_bandwidth"),
     ({"fc_pim": {"stack": {"banks_per_group": 0}}}, "banks_per_group"),
     ({"fc_pim": {"bank_groups_with_pus": 9}}, "bank_groups_with_pus"),
     ({"gpu": {"compute_efficiency": 1.5}}, "compute_efficiency"),
     ({"num_gpus": "six"}, "num_gpus")],
)
def test_non_physical_values_name_the_field(override, field):
    with pytest.raises(SpecError, match=field):
        load_system(override)


def test_config_files(tmp_path):
    good = tmp_path / "h100.json"
    good.write_text(json.dumps({"base": "papi", "gpu": "H100", "attention_link": "pcie5"}))
    spec = load_system(good)
    assert spec.gpu.name == "H100" and spec.attention_link.name.startswith("PCIe5")
    yml = tmp_path / "hbm.yaml"
    yml.write_text("base: papi\nfc_pim:\n  power_budget: true\n")
    assert load_system(yml).fc_pim.power_budget
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not valid json"):
        load_system(bad)
    with pytest.raises(SpecError, match="unknown preset 'B200'"):
        load_system({"gpu": "B200"})


def test_invalid_unit_and_parallelism():
    cm = CostModel("a100_attacc", "llama-65b")
    with pytest.raises(ValueError, match=r"FC unit 'pim' is not available .* allowed: \['gpu'\]"):
        cm.iteration(4, 1, 100.0, "pim")
    with pytest.raises(ValueError, match="rlp must be a positive integer"):
        cm.iteration(-4, 1, 100.0, "gpu")
    with pytest.raises(ValueError, match="sum_ctx must be >= 0"):
        cm.iteration(4, 1, -1.0, "gpu")


def test_batch_errors():
    cm = CostModel("papi", "llama-65b")
    with pytest.raises(ValueError, match=">= 1 token"):
        load_batch([1, 0], [3, 3])
    with pytest.raises(ValueError, match="acceptance_rate"):
        run_batch(cm, [1], [3], 1, static_placement("pim"), acceptance_rate=1.5)
    with pytest.raises(ValueError, match="tlp must be a positive integer"):
        run_batch(cm, [1], [3], 0, static_placement("pim"))


def test_dataset_errors(tmp_path):
    with pytest.raises(WorkloadError, match="unknown dataset 'poetry'; allowed"):
        get_dataset("poetry")
    with pytest.raises(WorkloadError, match="batch size must be a positive integer"):
        get_dataset("creative-writing").sample(-3, np.random.default_rng(0))
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(WorkloadError, match="must contain columns 'lin' and 'lout'"):
        load_lengths_csv(f)
    f.write_text("lin,lout\n3,4\n5,many\n")
    with pytest.raises(WorkloadError, match=r"x.csv:3: .* not integers"):
        load_lengths_csv(f)
    f.write_text("lin,lout\n3,-4\n")
    with pytest.raises(WorkloadError, match=">= 1 token"):
        load_lengths_csv(f)
    f.write_text("input,output\n3,4\n5,6\n")
    lin, lout = get_dataset(str(f)).sample(10, np.random.default_rng(0))
    assert set(lin) <= {3, 5} and set(lout) <= {4, 6}


def test_embedded_tables_match_the_source_statistics():
    rng = np.random.default_rng(1)
    _, out = get_dataset("creative-writing").sample(40000, rng)
    assert out.mean() == pytest.approx(222, rel=0.05)  # source: mean 222, median 144
    assert np.median(out) == pytest.approx(144, rel=0.05)
    _, out = get_dataset("general-qa").sample(40000, rng)
    assert out.mean() == pytest.approx(64, rel=0.07)
