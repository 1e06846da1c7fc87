"""The comparison statistics (rliable): IQM, stratified-bootstrap CIs, probability of improvement."""

import numpy as np
import pytest

from experiments import stats


def test_iqm_ignores_the_outer_quartiles():
    x = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0]])
    assert stats.iqm_ci(x)["iqm"] == pytest.approx(1.0)


def test_ci_brackets_the_point_and_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.normal(1.1, 0.05, size=(3, 30))
    a, b = stats.iqm_ci(x, seed=1), stats.iqm_ci(x, seed=1)
    assert a == b
    assert a["ci_low"] < a["iqm"] < a["ci_high"]
    assert 1.05 < a["ci_low"] and a["ci_high"] < 1.15
    wide = stats.iqm_ci(rng.normal(1.1, 0.5, size=(3, 30)))
    assert wide["ci_high"] - wide["ci_low"] > a["ci_high"] - a["ci_low"]


def test_probability_of_improvement():
    better = np.full((3, 10), 2.0)
    same = np.ones((1, 10))
    assert stats.probability_of_improvement(better, same)["p"] == 1.0
    assert stats.probability_of_improvement(same, same)["p"] == 0.5
    assert stats.probability_of_improvement(same, better)["p"] == 0.0
    with pytest.raises(ValueError, match="same episodes"):
        stats.probability_of_improvement(np.ones((1, 3)), np.ones((1, 4)))


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        stats.iqm_ci([1.0, np.nan])


def test_evaluate_reports_iqm_and_probability(tmp_path):
    from experiments import evaluate

    res = evaluate.evaluate("papi_env/PapiSchedule-v0", ["threshold", "always-pim"], 4, 0,
                            {"batch_size": [4, 16], "tlp": [1, 4]})
    row = res["policies"]["always-pim"]
    assert row["iqm_vs_best_rule"]["ci_low"] <= row["iqm_vs_best_rule"]["iqm"] <= row["iqm_vs_best_rule"]["ci_high"]
    assert 0.0 <= row["p_improvement_vs_best_rule"]["p"] <= 1.0
    assert len(row["episode_scores"]) == 4
    assert "IQM [95% CI]" in evaluate.to_markdown(res)


def test_probability_of_improvement_is_rliables_estimator():
    from rliable import metrics

    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 0.1, (3, 12)), rng.normal(0.98, 0.1, (2, 12))
    x[0, 0] = y[0, 0]  # a tie
    assert stats.probability_of_improvement(x, y)["p"] == pytest.approx(metrics.probability_of_improvement(x, y))


def _cell(folder, scores_by_seed, seeds=(1_000_000, 1_000_019)):
    import json

    episodes = len(scores_by_seed[0])
    policies = {"threshold": {"episode_scores": [1.0] * episodes}}
    policies.update({f"ppo:run_s{i}/best_model.zip": {"episode_scores": s} for i, s in enumerate(scores_by_seed)})
    cell = folder / "PapiSchedule" / "latency"
    cell.mkdir(parents=True)
    (cell / "eval.json").write_text(json.dumps({
        "env": "papi_env/PapiSchedule-v0", "objective": "latency", "episodes": episodes, "eval_seeds": list(seeds),
        "best_rule": "threshold", "policies": policies}))


def test_compare_two_runs_cell_by_cell(tmp_path):
    pytest.importorskip("rliable")
    from experiments import compare

    rng = np.random.default_rng(0)
    old = [list(1.0 + 0.01 * rng.random(20)) for _ in range(3)]
    _cell(tmp_path / "a", old)
    _cell(tmp_path / "b", [[x + 0.05 for x in s] for s in old])  # B better on every episode
    _cell(tmp_path / "c", [[x - 0.05 for x in s] for s in old])  # C worse on every episode
    (better,) = compare.compare(tmp_path / "a", tmp_path / "b")
    assert better["p_b_better"]["p"] == 1.0 and better["no_worse"] and better["mean_ratio_b_over_a"] > 1.04
    (worse,) = compare.compare(tmp_path / "a", tmp_path / "c")
    assert worse["p_b_better"]["p"] == 0.0 and not worse["no_worse"]
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "compare.md").read_text().count("| yes |") == 1
    _cell(tmp_path / "d", old, seeds=(1_002_000, 1_002_019))
    with pytest.raises(ValueError, match="different episodes"):
        compare.compare(tmp_path / "a", tmp_path / "d")
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2


def test_evaluate_without_intervals_gives_the_same_means_without_the_bootstrap():
    from experiments.evaluate import evaluate, to_markdown

    full = evaluate("papi_env/PapiSpecSchedule-v0", ["threshold", "leviathan"], 3, 0, {"batch_size": 8})
    means = evaluate("papi_env/PapiSpecSchedule-v0", ["threshold", "leviathan"], 3, 0, {"batch_size": 8},
                     intervals=False)
    for name, row in full["policies"].items():
        other = means["policies"][name]
        assert other["iqm_vs_best_rule"] is None and other["p_improvement_vs_best_rule"] is None
        assert {k: v for k, v in row.items() if "iqm" not in k and "p_improvement" not in k} == {
            k: v for k, v in other.items() if "iqm" not in k and "p_improvement" not in k}
    assert "| - | - |" in to_markdown(means)


def test_pooled_quantile_ci_resamples_episodes():
    """The pooled quantile is the quantile of all samples; its CI comes from resampling whole
    episodes: identical episodes give a zero-width interval, different ones a wider one."""
    same = [np.arange(100.0)] * 5
    ci = stats.pooled_quantile_ci(same, 0.99)
    assert ci["value"] == np.quantile(np.concatenate(same), 0.99) and ci["ci_low"] == ci["ci_high"] == ci["value"]
    spread = [np.arange(100.0) * k for k in range(1, 6)]
    wide = stats.pooled_quantile_ci(spread, 0.5)
    assert wide["ci_low"] < wide["value"] < wide["ci_high"]
    with pytest.raises(ValueError, match="at least one episode"):
        stats.pooled_quantile_ci([], 0.5)
