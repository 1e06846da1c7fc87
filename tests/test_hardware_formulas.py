"""The simulator's formulas against hand computations from the brief's numbers."""

import math
from dataclasses import replace

import pytest

from hardware import costs
from hardware.calibrate import calibrate_alpha, with_power_budget
from hardware.models import MODEL_PRESETS, fc_arithmetic_intensity
from hardware.specs import PIM_PRESETS, SYSTEM_PRESETS, EnergySpec, GPUSpec
from hardware.systems import CostModel


def test_fc_arithmetic_intensity_opt30b():
    # [P] OPT-30B (h = 7168), RLP 4, TLP 8: 31.7 FLOP/B
    assert fc_arithmetic_intensity(4 * 8, 7168) == pytest.approx(31.7, abs=0.05)


@pytest.mark.parametrize(
    "kind, tflops, tbps",
    [("attacc", 10.65, 10.65), ("fc_pim", 31.96, 7.99), ("attn_pim", 5.33, 10.65)],
)
def test_per_stack_pim_throughput(kind, tflops, tbps):
    # The brief's figures [D]: 1024 (or 768) banks x 32 B per 4 tCK of 0.769 ns; x PUs per bank x
    # 16 MACs x 2 FLOPs. Under the power budget (every preset) MACs are 6 tCK apart: 4/6 of that.
    pim = replace(PIM_PRESETS[kind], power_budget=False)
    assert pim.peak_flops / 1e12 == pytest.approx(tflops, rel=2e-3)
    assert pim.internal_bandwidth / 1e12 == pytest.approx(tbps, rel=2e-3)
    budget = PIM_PRESETS[kind]
    assert budget.power_budget
    assert budget.peak_flops / 1e12 == pytest.approx(tflops * 4 / 6, rel=2e-3)


def test_fc_pim_bank_count():
    assert PIM_PRESETS["fc_pim"].pim_banks == 768  # 96 banks per die x 8 dies [P]
    assert PIM_PRESETS["attacc"].pim_banks == 1024


def test_kv_bytes_per_token():
    m = MODEL_PRESETS["llama-65b"]
    assert m.kv_bytes_per_token == 80 * 2 * 8192 * 2
    assert MODEL_PRESETS["gpt3-175b"].kv_bytes_per_token == 96 * 2 * 12288 * 2


def test_energy_per_byte():
    e = EnergySpec()
    assert e.gpu_offchip_pj_per_byte == pytest.approx(28.72)
    assert e.pim_bank_read_pj_per_byte == pytest.approx(4.4)


@pytest.mark.parametrize("reuse, paper_share", [(1, 0.967), (64, 0.331)])
def test_pim_dram_energy_share(reuse, paper_share):
    # [P] Fig. 7, DRAM access share of PIM energy: 96.7% with no reuse, 33.1% with 64x reuse. Our cell
    # energy (4.4 pJ/B, read once per activation) against 0.32 pJ/MAC gives 96.5% and 30.0%.
    e = EnergySpec()
    dram = e.pim_bank_read_pj_per_byte
    mac = reuse * e.mac_pj / 2  # MACs per byte of FP16 weight
    assert dram / (dram + mac) == pytest.approx(paper_share, abs=0.035)
    # ... and the kernel model charges exactly that
    data = 8192 * 8192 * 2.0
    d, m = costs.pim_array_energy(data, reuse, PIM_PRESETS["attacc"], e)
    assert d / (d + m) == pytest.approx(dram / (dram + mac))


def test_rereading_every_round_contradicts_fig7():
    # The v0.1 energy (a cell read per MAC round) puts DRAM at ~96% of the energy at 64x reuse.
    e = replace(EnergySpec(), pim_reread_per_round=True)
    d, m = costs.pim_array_energy(8192 * 8192 * 2.0, 64, PIM_PRESETS["attacc"], e)
    assert d / (d + m) > 0.9


def test_allreduce_hand_computed():
    gpu, e = GPUSpec(), EnergySpec()
    nbytes = 16 * 8192 * 2  # RLP x TLP = 16 tokens of h = 8192
    chunk = nbytes / 6
    step = max(6.06e-6 + 0.009e-9 * chunk, chunk / 300e9)
    assert costs.allreduce(nbytes, 6, gpu, e).time == pytest.approx(5 * step)
    assert costs.allreduce(nbytes, 1, gpu, e).time == 0.0


def test_gpu_fc_is_memory_bound_at_small_batch():
    cm = CostModel("a100_attacc", "llama-65b")
    weights = cm.model.weight_bytes
    roofline = weights / (6 * 3352e9 * 0.85)
    assert cm.fc(1, "gpu").time == pytest.approx(roofline, rel=0.05)


def test_fc_pim_vs_attacc_fc_is_about_3x_at_16_tokens():
    # 4P1B on 768 banks vs 1P1B on 1024 banks at R = 16: 16/4 x 768/1024 = 3x, less overheads;
    # the paper's Fig. 12 says 2.9x
    fc_pim = CostModel("pimonly_papi", "llama-65b").fc(16, "pim").time
    attacc = CostModel("attacc_only", "llama-65b").fc(16, "pim").time
    assert 2.4 < attacc / fc_pim < 3.05


def test_attn_pim_vs_attacc_attention_is_about_1_7x_slower():
    # [P] Fig. 12: attention on Attn-PIM (1P2B) 1.7x slower than on AttAcc (1P1B), LLaMA-65B b4 s4
    slow = CostModel("pimonly_papi", "llama-65b").attention(4, 4, 4 * 400.0).time
    fast = CostModel("attacc_only", "llama-65b").attention(4, 4, 4 * 400.0).time
    assert 1.5 < slow / fast < 2.0


def test_alpha_calibration_in_the_tens():
    cm = CostModel("papi", "llama-65b")  # every PIM kind under the power budget (6 tCK)
    alpha = calibrate_alpha(cm, max_tokens=256)
    assert 20 <= alpha <= 70
    assert cm.fc(alpha, "pim").time <= cm.fc(alpha, "gpu").time
    assert cm.fc(alpha + 1, "pim").time > cm.fc(alpha + 1, "gpu").time
    unconstrained = calibrate_alpha(CostModel(with_power_budget("papi", False), "llama-65b"), max_tokens=256)
    assert unconstrained > alpha  # faster MACs: FC-PIM wins longer


def test_alpha_needs_both_units():
    with pytest.raises(ValueError, match="calibration needs both"):
        calibrate_alpha(CostModel("a100_attacc", "llama-65b"))


def test_every_system_preset_costs_an_iteration():
    for name, spec in SYSTEM_PRESETS.items():
        cm = CostModel(spec, "gpt3-66b")
        it = cm.iteration(8, 2, 8 * 300.0, spec.fc_units[0])
        assert it.time > 0 and it.energy > 0 and math.isfinite(it.time), name
