import json

from experiments import reproduce_paper

NAMES = [
    "speedup_vs_a100_attacc_creative", "speedup_vs_a100_hbmpim_creative", "speedup_vs_attacc_only_creative",
    "speedup_vs_a100_attacc_generalqa", "speedup_vs_attacc_only_generalqa",
    "energy_eff_vs_a100_attacc_creative", "energy_eff_vs_attacc_only_creative", "tlp_sweep_vs_a100_attacc",
    "tlp_sweep_vs_attacc_only", "pimonly_papi_vs_attacc_only", "fc_pim_vs_attacc_fc_speedup",
    "attn_pim_vs_attacc_attn_slowdown", "comm_share_pimonly_b4s4",
]


def test_reproduction_end_to_end(tmp_path):
    assert reproduce_paper.main(["--out", str(tmp_path), "--batches", "1"]) == 0
    rows = json.loads((tmp_path / "paper_table.json").read_text())["rows"]
    assert [r["name"] for r in rows] == NAMES
    for r in rows:
        assert r["ours"] > 0 and r["paper"] > 0
    ours = {r["name"]: r["ours"] for r in rows}
    assert ours["speedup_vs_a100_attacc_creative"] > 1  # PAPI beats its static baseline
    assert 0 < ours["comm_share_pimonly_b4s4"] < 1
    assert (tmp_path / "speedups.png").stat().st_size > 10_000
    assert "| result | paper | ours" in (tmp_path / "paper_table.md").read_text()
    assert not list(tmp_path.glob("*.tmp"))
