"""Is one experiment really better than another on the same folds? The corrected resampled t-test.

Two experiments scored on identical folds give paired scores, one pair per fold. The plain paired t-test on their
differences treats the folds as independent samples, but k-fold training sets overlap (each pair shares
(k - 2)/(k - 1) of its rows), so the spread of the differences understates their variance and the test finds
"significant" differences far too often. Nadeau and Bengio (2003, "Inference for the generalization error")
correct the variance of the mean difference from ``s² / J`` to ``(1/J + n_test/n_train) s²`` over the J folds;
Bouckaert and Frank (2004) showed the same corrected statistic, over all ``k · r`` folds, holds for r-times
repeated k-fold ("corrected repeated k-fold cv test"). Both are :func:`corrected_t` with J the number of folds.

A t-interval is symmetric, so near the limit of what a score can be (an accuracy of 0.98 over uneven folds) it
reaches past it: intervals are cut to the values the score can take (:func:`score_range`). The cut interval
covers the true mean as often as the whole one does, as the true mean lies in that range too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from kerasflow.tasks.config.schema import RISING
from kerasflow.tasks.data.split import Split

LOW_POWER_FOLDS = 5
"""Below this many folds, a test of the difference has little power: the report and `compare` say so."""


def score_range(metric: str) -> tuple[float, float]:
    """The values `metric` can take: every classification score lies in [0, 1], perplexity is at least 1, and
    losses and errors are at least 0.

    Examples
    --------
    >>> score_range("accuracy"), score_range("perplexity"), score_range("rmse")
    ((0.0, 1.0), (1.0, inf), (0.0, inf))
    """
    if metric in RISING:
        return 0.0, 1.0
    return (1.0 if metric == "perplexity" else 0.0), math.inf


def difference_range(metric: str) -> tuple[float, float]:
    """The values a difference of two `metric` scores can take.

    Examples
    --------
    >>> difference_range("accuracy"), difference_range("mse")
    ((-1.0, 1.0), (-inf, inf))
    """
    low, high = score_range(metric)
    return low - high, high - low


def held_out_ratio(n_test: Sequence[int], n_train: Sequence[int]) -> float:
    """Held-out rows per training row of folds of these sizes, on average: the variance correction's
    n_test / n_train (:func:`corrected_t`).

    Examples
    --------
    >>> held_out_ratio([2, 2], [8, 8])
    0.25
    """
    return float(np.mean(n_test) / np.mean(n_train))


def split_ratio(splits: Sequence[Split]) -> float:
    """:func:`held_out_ratio` of `splits`.

    Examples
    --------
    >>> split_ratio([Split(np.arange(8), np.arange(8, 10)), Split(np.arange(2, 10), np.arange(2))])
    0.25
    """
    return held_out_ratio([len(s.test_index) for s in splits], [len(s.train_index) for s in splits])


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval, the t statistic against 0 and its two-sided p-value."""

    mean: float
    low: float
    high: float
    t: float
    p: float
    folds: int

    def as_dict(self) -> dict[str, float | None]:
        """The fields as strict JSON holds them: a number that is not finite is null (`t` where the values do not
        vary at all, their variance 0; an interval's end where a value is NaN).

        Examples
        --------
        >>> corrected_t([1.0, 1.0, 1.0], 0.5).as_dict()
        {'mean': 1.0, 'low': 1.0, 'high': 1.0, 't': None, 'p': 0.0, 'folds': 3}
        """
        return {key: value if not isinstance(value, float) or math.isfinite(value) else None
                for key, value in asdict(self).items()}


def corrected_t(values: Sequence[float], test_train_ratio: float, corrected: bool = True,
                level: float = 0.95, within: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """The mean of per-fold `values` (scores, or paired differences of scores), its `level` interval cut to
    `within` (:func:`score_range`, :func:`difference_range`) and its t-test against 0, with Nadeau and Bengio's
    variance correction for overlapping training sets (`test_train_ratio` = held-out rows / training rows of a
    fold); `corrected=False` gives the plain t-test.

    Examples
    --------
    Four folds of 4-fold CV (each holds out a third as many rows as it trains on), differences 1, 2, 3, 2: mean 2,
    sample variance 2/3, corrected variance of the mean (1/4 + 1/3) * 2/3 = 7/18, t = 2 / sqrt(7/18) = 3.207.

    >>> result = corrected_t([1.0, 2.0, 3.0, 2.0], test_train_ratio=1 / 3)
    >>> round(result.t, 3), round(result.p, 4), round(result.low, 3), round(result.high, 3)
    (3.207, 0.0491, 0.015, 3.985)

    Uncorrected, the same differences give the paired t-test's t = 2 / sqrt((2/3) / 4) = 4.899:

    >>> round(corrected_t([1.0, 2.0, 3.0, 2.0], 1 / 3, corrected=False).t, 3)
    4.899

    Accuracies of 0.99, 1.0, 0.92 and 1.0: the interval's top, 1.071, is cut to 1.

    >>> result = corrected_t([0.99, 1.0, 0.92, 1.0], 1 / 3, within=score_range("accuracy"))
    >>> round(result.low, 3), result.high
    (0.884, 1.0)
    """
    values = np.asarray(values, dtype=np.float64)
    folds = len(values)
    if folds < 2:
        raise ValueError(f"a t-test needs at least 2 folds' values; received {folds}")
    mean = float(values.mean())
    variance = float(values.var(ddof=1))
    scale = math.sqrt((1 / folds + (test_train_ratio if corrected else 0.0)) * variance)
    df = folds - 1
    margin = float(stats.t.ppf((1 + level) / 2, df)) * scale
    if scale == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / scale
        p = float(2 * stats.t.sf(abs(t), df))
    low, high = (float(np.clip(end, *within)) for end in (mean - margin, mean + margin))  # NaN stays NaN
    return Interval(mean=mean, low=low, high=high, t=t, p=p, folds=folds)
