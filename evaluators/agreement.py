"""How well a judge agrees with humans: Cohen's kappa for labels, correlations for numbers."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass
class AgreementResult:
    """Agreement over ``n`` paired scores. Statistics that are undefined for the data are None
    (e.g. kappa when both raters used one single label; correlation when either side is constant)."""

    n: int
    data_type: str  # numeric | categorical | boolean
    cohen_kappa: float | None = None
    percent_agreement: float | None = None
    pearson: float | None = None
    pearson_p: float | None = None
    spearman: float | None = None
    spearman_p: float | None = None
    mean_abs_diff: float | None = None


def _value(item: Any) -> Any:
    """A raw value from a value, a Score, or a scores-table row."""
    if hasattr(item, "value") and hasattr(item, "name"):  # evaluators.base.Score
        return item.value
    if isinstance(item, Mapping):
        if item.get("data_type") == "categorical":
            return item.get("string_value")
        if item.get("data_type") == "boolean":
            return None if item.get("value") is None else bool(item["value"])
        return item.get("value")
    return item


def _pairs(human: Sequence[Any] | Mapping[Any, Any], judge: Sequence[Any] | Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    if isinstance(human, Mapping) and isinstance(judge, Mapping):
        keys = [k for k in human if k in judge]  # join on item id (e.g. trace or span id)
        raw = [(human[k], judge[k]) for k in keys]
    elif isinstance(human, Mapping) or isinstance(judge, Mapping):
        raise TypeError("pass two sequences (aligned by position) or two mappings (joined by key)")
    else:
        if len(human) != len(judge):
            raise ValueError(f"human_scores has {len(human)} items but judge_scores has {len(judge)}")
        raw = list(zip(human, judge))
    pairs = [(_value(h), _value(j)) for h, j in raw]
    # An item either side did not score cannot count for or against agreement.
    return [(h, j) for h, j in pairs if not _missing(h) and not _missing(j)]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _infer_type(pairs: list[tuple[Any, Any]]) -> str:
    values = [v for pair in pairs for v in pair]
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if any(isinstance(v, (str, bool)) for v in values):
        return "categorical"
    return "numeric"


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters' labels; None when chance agreement is 1 (one shared label)."""
    labels = sorted({*a, *b}, key=repr)
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        confusion[index[x], index[y]] += 1
    n = confusion.sum()
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(1) @ confusion.sum(0)) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return float((observed - expected) / (1 - expected))


def _corr(fn: Any, x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fn(x, y)
    stat, p = float(res.statistic), float(res.pvalue)
    return (None if math.isnan(stat) else stat), (None if math.isnan(p) else p)


def agreement(
    human_scores: Sequence[Any] | Mapping[Any, Any],
    judge_scores: Sequence[Any] | Mapping[Any, Any],
    data_type: str | None = None,
) -> AgreementResult:
    """Agreement between human and judge scores.

    Inputs are two sequences aligned by position, or two mappings joined on their keys; items may be
    raw values, ``Score`` objects or ``scores`` rows. Pairs with a missing side are dropped.
    Boolean / categorical -> Cohen's kappa and percent agreement; numeric -> Pearson, Spearman and
    mean absolute difference.
    """
    pairs = _pairs(human_scores, judge_scores)
    kind = data_type or _infer_type(pairs)
    if kind not in ("numeric", "categorical", "boolean"):
        raise ValueError(f"data_type: must be numeric, categorical or boolean, got {kind!r}")
    result = AgreementResult(n=len(pairs), data_type=kind)
    if not pairs:
        return result
    h, j = zip(*pairs)
    if kind == "numeric":
        x, y = np.asarray(h, dtype=float), np.asarray(j, dtype=float)
        result.mean_abs_diff = float(np.mean(np.abs(x - y)))
        result.pearson, result.pearson_p = _corr(stats.pearsonr, x, y)
        result.spearman, result.spearman_p = _corr(stats.spearmanr, x, y)
    else:
        if kind == "categorical":
            h, j = tuple(map(str, h)), tuple(map(str, j))
        result.cohen_kappa = cohen_kappa(h, j)
        result.percent_agreement = sum(a == b for a, b in zip(h, j)) / len(pairs)
    return result
