"""Judge-vs-human agreement against hand-computed values."""

from __future__ import annotations

import math

import pytest

from evaluators import Score, agreement


def test_cohen_kappa_boolean_hand_computed():
    # 10 items. Confusion (human rows x judge cols): TT=4, TF=1, FT=2, FF=3.
    human = [True] * 5 + [False] * 5
    judge = [True, True, True, True, False, True, True, False, False, False]
    r = agreement(human, judge)
    # po = 7/10; pe = (5*6 + 5*4) / 100 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert r.data_type == "boolean" and r.n == 10
    assert r.percent_agreement == pytest.approx(0.7)
    assert r.cohen_kappa == pytest.approx(0.4)


def test_cohen_kappa_three_categories_hand_computed():
    human = ["good", "good", "bad", "bad", "ok", "ok", "good", "bad"]
    judge = ["good", "ok", "bad", "bad", "ok", "good", "good", "ok"]
    r = agreement(human, judge)
    # po = 5/8. Marginals human: good 3, bad 3, ok 2; judge: good 3, bad 2, ok 3.
    # pe = (3*3 + 3*2 + 2*3) / 64 = 21/64; kappa = (40/64 - 21/64) / (43/64) = 19/43
    assert r.data_type == "categorical"
    assert r.cohen_kappa == pytest.approx(19 / 43)


def test_numeric_correlations_and_mean_abs_diff_hand_computed():
    human = [1, 2, 3, 4, 5]
    judge = [2, 1, 4, 3, 5]
    r = agreement(human, judge)
    # Pearson: sum(dx*dy) = (-2*-1)+(-1*-2)+(0*1)+(1*0)+(2*2) = 8; sum dx^2 = sum dy^2 = 10 -> 0.8
    assert r.pearson == pytest.approx(0.8)
    # Spearman on ranks equal to the values: also 0.8 (1 - 6*sum d^2 / (n(n^2-1)) = 1 - 6*4/120)
    assert r.spearman == pytest.approx(0.8)
    assert r.mean_abs_diff == pytest.approx(0.8)  # |diffs| = 1,1,1,1,0
    assert r.cohen_kappa is None and 0 < r.pearson_p < 1


def test_mappings_are_joined_on_ids_and_missing_scores_dropped():
    human = {"t1": 5, "t2": 3, "t3": 1, "t4": None}
    judge = {"t2": 3, "t3": 2, "t1": 4, "t5": 2, "t4": 4}
    r = agreement(human, judge)
    assert r.n == 3 and r.mean_abs_diff == pytest.approx(2 / 3)


def test_score_objects_and_rows_are_accepted():
    human = [Score("q", True), Score("q", False)]
    judge_rows = [Score("q", True).to_row("p", "t", "s1"), Score("q", True).to_row("p", "t", "s2")]
    r = agreement(human, judge_rows)
    assert r.data_type == "boolean" and r.percent_agreement == 0.5
    # Human all True/False split, judge constant True: pe = 0.5, po = 0.5 -> kappa 0
    assert r.cohen_kappa == pytest.approx(0.0)


def test_undefined_statistics_are_none():
    r = agreement(["a", "a"], ["a", "a"])
    assert r.percent_agreement == 1.0 and r.cohen_kappa is None
    r = agreement([3, 3, 3], [1, 2, 3])
    assert r.pearson is None and r.spearman is None and r.mean_abs_diff == pytest.approx(1.0)
    assert agreement([], []).n == 0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="human_scores has 2"):
        agreement([1, 2], [1])
    assert not math.isnan(agreement([1.0, 2.0, 3.0], [1.0, 2.0, 2.5]).pearson)
