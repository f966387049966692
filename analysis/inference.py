"""The report's inference: intervals that stay inside a metric's range, paired tests against a reference
with declared comparison families, Holm and Benjamini-Hochberg adjustment, equivalence (TOST) with
declared margins, and the effect a design could detect.

Everything here is a pure function of arrays or of the tables `analysis.stats` builds, so a test can feed
it synthetic rows with a known answer. Power comes from statsmodels, BH from scipy; the intervals are t
intervals on a transformed scale, written here because no kept library gives a range-respecting interval
for a handful of replicates (a bootstrap of 5 seeds resamples too few points to cover).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from lthray import metrics

ALPHA = 0.05
POWER = 0.8
# Each metric's range (intervals of its mean stay inside: a logit-type transform) and its declared
# equivalence margin (the difference from the reference that counts as none), from its record
# (lthray.metrics); `python -m analysis.pareto --margin METRIC=VALUE` replaces a margin.
RANGES = metrics.RANGES
MARGINS = metrics.MARGINS
_EPS = 1e-3  # values at a bound are moved this far inside it (as a share of the range) before the logit


def _logit(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, _EPS, 1 - _EPS)
    return np.log(u / (1 - u))


def _expit(z: float) -> float:
    return float(1 / (1 + math.exp(-z)))


def interval(values: np.ndarray | pd.Series, bounds: tuple[float, float] | None = None,
             level: float = 1 - ALPHA) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values. Unbounded: a t interval. Bounded: the t interval of the
    values mapped to (0, 1) and through the logit (for a correlation this is Fisher's z), mapped back, so
    it never leaves the range; widened to contain the mean where the back-mapped centre differs from it.
    low = high = nan when n < 2; low = high = mean when every value is equal."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if n < 2:
        return m, math.nan, math.nan, 1
    if np.ptp(v) == 0:
        return m, m, m, n
    t = stats.t.ppf(0.5 + level / 2, n - 1)
    if bounds is None:
        half = t * v.std(ddof=1) / math.sqrt(n)
        return m, m - half, m + half, n
    a, b = bounds
    z = _logit((v - a) / (b - a))
    half = t * z.std(ddof=1) / math.sqrt(n)
    lo, hi = (a + (b - a) * _expit(float(z.mean()) + s * half) for s in (-1, 1))
    return m, min(lo, m), max(hi, m), n


@dataclass(frozen=True)
class Paired:
    """One paired comparison: the mean difference (method - reference) over n pairs, its t interval (clipped
    to the difference's range, `clipped` says so), the two-sided p of 'no difference', the TOST p of
    'within +-margin', the non-inferiority p of 'above -margin' (`p_ni`: TOST's lower one-sided half;
    "keeps the reference's accuracy" is this question, not equivalence), and the smallest |difference|
    the design detects with 80% power (two-sided, at `alpha`), standardised (`mde_d`) and in the
    metric's units (`mde`: mde_d times the pairs' SD)."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float
    p: float
    p_tost: float
    mde_d: float
    mde: float
    clipped: bool
    p_ni: float = math.nan


@lru_cache(maxsize=1024)
def detectable_d(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The standardised effect a paired t-test on n pairs detects with `power` at two-sided `alpha`."""
    if n < 2:
        return math.nan
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


def paired(diff: np.ndarray | pd.Series, margin: float, span: float = math.inf, alpha: float = ALPHA,
           mde_alpha: float | None = None) -> Paired:
    """The paired comparison of differences `diff` (one per seed). `span`: the largest |difference| the
    metric allows (2 for a correlation, 1 for an accuracy); `mde_alpha`: the level the detectable effect is
    computed at (default `alpha`; the report passes its family's Bonferroni level, what a lone effect must
    clear under Holm)."""
    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return Paired(*(math.nan,) * 3, 0, *(math.nan,) * 5, False)
    m = float(d.mean())
    if n < 2:
        return Paired(m, math.nan, math.nan, 1, math.nan, math.nan, math.nan, math.nan, math.nan, False)
    sd = float(d.std(ddof=1))
    dz = detectable_d(n, mde_alpha if mde_alpha is not None else alpha)
    if sd == 0:  # every pair differs by the same amount (e.g. identical networks): no sampling noise
        return Paired(m, m, m, n, 0.0, 0.0 if m != 0 else 1.0, 0.0 if abs(m) < margin else 1.0, dz, 0.0, False,
                      0.0 if m > -margin else 1.0)
    half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
    lo, hi = max(m - half, -span), min(m + half, span)
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    p_low = float(stats.ttest_1samp(d, -margin, alternative="greater").pvalue)  # H0: diff <= -margin
    p_high = float(stats.ttest_1samp(d, margin, alternative="less").pvalue)  # H0: diff >= +margin
    return Paired(m, lo, hi, n, sd, p, max(p_low, p_high), dz, dz * sd, lo != m - half or hi != m + half, p_low)


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (monotone, capped at 1)."""
    order = np.argsort(p, kind="stable")
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj


def adjust(p: np.ndarray | pd.Series | list[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values over one family (nan entries stay nan and are not counted): 'holm' controls the
    family-wise error rate, 'fdr_bh' (Benjamini-Hochberg, scipy's false_discovery_control) the false
    discovery rate. Holm is the few lines above rather than statsmodels' multipletests, which runs a full
    gc.collect() on every call (80 ms in a loaded process: minutes over a report's families and the
    simulation tests); the tests check both against hand computations."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        if method == "holm":
            out[ok] = _holm(p[ok])
        elif method == "fdr_bh":
            out[ok] = stats.false_discovery_control(p[ok], method="bh")
        else:
            raise ValueError(f"adjust: method {method!r} is not 'holm' or 'fdr_bh'")
    return out


VERDICTS = ("higher", "lower", "equivalent", "inconclusive", "no CI")


def verdict(mean: float, p_holm: float, p_tost_holm: float, alpha: float = ALPHA) -> str:
    """'higher' / 'lower' when the Holm-adjusted p is below alpha; 'equivalent' when the Holm-adjusted
    TOST p is (the difference lies within the declared margin); 'inconclusive' otherwise; 'no CI' with
    one pair."""
    if not np.isfinite(p_holm):
        return "no CI"
    if p_holm < alpha:
        return "higher" if mean > 0 else "lower"
    if np.isfinite(p_tost_holm) and p_tost_holm < alpha:
        return "equivalent"
    return "inconclusive"


def family_table(diffs: pd.DataFrame, metric: str, margin: float, span: float = math.inf,
                 keys: tuple[str, ...] = ("family", "level")) -> pd.DataFrame:
    """One declared comparison family: every row of `diffs` (one comparison each, with a list column
    `pairs_{metric}` of its per-seed differences) tested for `metric`, adjusted together. Returns the
    keys plus mean, lo, hi, n, p, p_holm, p_bh, p_tost, p_tost_holm, p_ni, p_ni_holm (non-inferiority at
    the margin, Holm over the family), mde, mde_d, clipped and verdict."""
    raw = [(i, diffs.loc[i, f"pairs_{metric}"]) for i in diffs.index]
    m = sum(1 for _, d in raw if np.isfinite(np.asarray(d, dtype=float)).sum() >= 2)
    recs = []
    for i, d in raw:
        c = paired(d, margin, span, mde_alpha=ALPHA / max(m, 1))
        recs.append({**{k: diffs.loc[i, k] for k in keys}, "mean": c.mean, "lo": c.lo, "hi": c.hi, "n": c.n,
                     "sd": c.sd, "p": c.p, "p_tost": c.p_tost, "p_ni": c.p_ni, "mde": c.mde, "mde_d": c.mde_d,
                     "clipped": c.clipped})
    out = pd.DataFrame(recs, index=diffs.index)
    if out.empty:
        return out
    out["p_holm"], out["p_bh"] = adjust(out["p"]), adjust(out["p"], "fdr_bh")
    out["p_tost_holm"], out["p_ni_holm"] = adjust(out["p_tost"]), adjust(out["p_ni"])
    out["verdict"] = [verdict(a, b, c) for a, b, c in zip(out["mean"], out["p_holm"], out["p_tost_holm"],
                                                            strict=True)]
    out["family_size"] = m
    return out


def collapsed(acc: np.ndarray, chance_level: float, within: float = 0.05, above: float = 0.15) -> bool:
    """Seeds that disagree wildly: some at chance accuracy (within `within` of it), others clearly above
    (more than `above`). A mean of such seeds describes none of them."""
    a = np.asarray(acc, dtype=float)
    a = a[np.isfinite(a)]
    return bool(len(a) >= 2 and (a <= chance_level + within).any() and (a > chance_level + above).any())
