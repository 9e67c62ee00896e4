"""POST /api/v1/compare: p-values equal scipy's on the same samples; verdicts right for clearly
different and for identical arms; bad bodies answered 400 naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from query_api.abtest import compare_continuous, compare_rates
from tests.query.conftest import BASE

FROM = BASE.isoformat()


def compare(api, key, body):
    resp = api(key).post("/compare", json={"from": FROM, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_latency_mann_whitney_matches_scipy_and_picks_faster_model(api, project_a):
    body = compare(api, project_a.key, {"metric": "latency", "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"}})
    a, b = project_a.column("duration_ms", model="gpt-4o"), project_a.column("duration_ms", model="gpt-4o-mini")
    assert body["test"] == "mann_whitney" and not body["sampled"]
    assert body["arms"]["a"]["n"] == a.size and body["arms"]["b"]["n"] == b.size
    assert body["p_value"] == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue, rel=1e-9, abs=1e-300)
    assert body["arms"]["a"]["median"] == pytest.approx(np.median(a), rel=1e-12)
    lo, hi = body["arms"]["b"]["median_ci"]
    assert lo <= np.median(b) <= hi
    assert body["verdict"] == "b_better"  # gpt-4o-mini is generated ~e^1 times faster


def test_welch_matches_scipy(api, project_a):
    body = compare(api, project_a.key, {"metric": "latency", "test": "welch_t",
                                        "a": {"model": "gpt-4o"}, "b": {"model": "claude-3-5-sonnet"}})
    a = project_a.column("duration_ms", model="gpt-4o")
    b = project_a.column("duration_ms", model="claude-3-5-sonnet")
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert body["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert body["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    lo, hi = body["arms"]["a"]["mean_ci"]
    assert lo < a.mean() < hi


def test_identical_arms_no_difference(api, project_a):
    body = compare(api, project_a.key, {"metric": "latency", "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o"}})
    assert body["p_value"] == pytest.approx(1.0) and body["verdict"] == "no_significant_difference"
    body = compare(api, project_a.key, {"metric": "cost", "test": "welch_t",
                                        "a": {"release": "v1"}, "b": {"release": "v2"}})
    assert body["verdict"] == "no_significant_difference"  # costs are drawn from one distribution


def test_score_compare_by_release(api, project_a):
    body = compare(api, project_a.key, {"metric": "score", "score_name": "helpfulness",
                                        "a": {"release": "v1"}, "b": {"release": "v2"}})
    releases = {s["trace_id"]: s["release"] for s in project_a.spans if s["parent_span_id"] == ""}
    by = {"v1": [], "v2": []}
    for score in project_a.scores:
        if score["name"] == "helpfulness":
            by[releases[score["trace_id"]]].append(score["value"])
    assert body["test"] == "welch_t"
    assert body["p_value"] == pytest.approx(stats.ttest_ind(by["v2"], by["v1"], equal_var=False).pvalue,
                                            rel=1e-6, abs=1e-300)
    assert body["verdict"] == "b_better"  # higher score is better


def test_error_rate_two_proportion_and_chi_square(api, project_a):
    spec = {"metric": "error_rate", "a": {"model": "gpt-4o"}, "b": {"model": "llama-3-70b"}}
    z = compare(api, project_a.key, spec)
    chi = compare(api, project_a.key, {**spec, "test": "chi_square"})
    counts = []
    for model in ("gpt-4o", "llama-3-70b"):
        rows = [s for s in project_a.spans if s["model"] == model]
        errors = sum(s["status"] == "error" for s in rows)
        counts.append([errors, len(rows) - errors])
    ref = stats.chi2_contingency(np.array(counts), correction=False)
    assert chi["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert z["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)  # z-test ≡ 2x2 chi-square without correction
    assert z["arms"]["a"]["successes"] == counts[0][0]
    rate_a, rate_b = counts[0][0] / sum(counts[0]), counts[1][0] / sum(counts[1])
    if ref.pvalue >= 0.05:
        assert z["verdict"] == "no_significant_difference"
    else:  # lower error rate wins
        assert z["verdict"] == ("a_better" if rate_a < rate_b else "b_better")


def test_rates_clearly_different():
    result = compare_rates(10, 1000, 90, 1000, test="two_proportion_z", lower_is_better=True)
    assert result["p_value"] < 1e-10 and result["verdict"] == "a_better"
    same = compare_rates(50, 1000, 50, 1000, test="chi_square", lower_is_better=True)
    assert same["p_value"] == pytest.approx(1.0) and same["verdict"] == "no_significant_difference"


def test_pure_stats_equal_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 2, 300), rng.normal(10.8, 3, 250)
    welch = compare_continuous(a, b, test="welch_t", lower_is_better=True)
    assert welch["p_value"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)
    assert welch["verdict"] == "a_better"
    mwu = compare_continuous(a, b, test="mann_whitney", lower_is_better=False)
    assert mwu["p_value"] == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue, rel=1e-12)
    assert mwu["verdict"] == "b_better"
    tiny = compare_continuous(np.array([1.0]), b, test="welch_t", lower_is_better=True)
    assert tiny["verdict"] == "insufficient_data"


@pytest.mark.parametrize("body,field", [
    ({"metric": "vibes", "a": {}, "b": {}}, "metric"),
    ({"metric": "latency", "b": {}}, "a"),
    ({"metric": "latency", "a": {"modle": "x"}, "b": {}}, "a.modle"),
    ({"metric": "latency", "a": {"status": "nope"}, "b": {}}, "a.status"),
    ({"metric": "latency", "a": {}, "b": {"from": "soon"}}, "b.from"),
    ({"metric": "latency", "a": {}, "b": {}, "test": "chi_square"}, "test"),
    ({"metric": "latency", "a": {}, "b": {}, "alpha": 2}, "alpha"),
    ({"metric": "score", "a": {}, "b": {}}, "score_name"),
    ({"metric": "latency", "a": {"model": {"$ne": 1}}, "b": {}}, "a.model"),
    ([1, 2], "body"),
])
def test_bad_bodies(api, project_a, body, field):
    resp = api(project_a.key).post("/compare", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"{field}:")
    bad_json = api(project_a.key).post("/compare", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400


def test_large_arms_are_thinned_deterministically(api, project_a):
    spec = {"metric": "latency", "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"}, "max_samples": 1000}
    first, again = compare(api, project_a.key, spec), compare(api, project_a.key, spec)
    assert first["sampled"] and first["arms"]["a"]["n_total"] == project_a.column("duration_ms", model="gpt-4o").size
    assert 500 < first["arms"]["a"]["n"] <= 1000
    assert first["p_value"] == again["p_value"] and first["verdict"] == "b_better"


def test_huge_arms_fall_back_to_count_and_hash_thinning(api, project_a, monkeypatch):
    import query_api.compare as compare_module

    monkeypatch.setattr(compare_module, "FETCH_ALL", 5000)
    spec = {"metric": "latency", "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"}, "max_samples": 2000}
    body = compare(api, project_a.key, spec)
    assert body["sampled"] and body["arms"]["a"]["n_total"] == project_a.column("duration_ms", model="gpt-4o").size
    assert 1000 < body["arms"]["a"]["n"] <= 2500 and body["verdict"] == "b_better"
    assert compare(api, project_a.key, spec)["p_value"] == body["p_value"]
