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
