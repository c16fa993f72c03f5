"""Student's t quantiles for the study's intervals, in numpy (scipy is not a dependency of the package).

t_quantile(0.975, df) for any real df >= 1 (Satterthwaite's df are not integers), elementwise over arrays:
the t CDF is the regularized incomplete beta function (continued fraction, Numerical Recipes' `betacf`),
inverted by Newton's method; large df by the Cornish-Fisher expansion. Within 1e-8 of scipy.stats.t.ppf
(tests/test_bootstrap.py), for any df >= 1 up to infinity (the normal quantile).
"""

from __future__ import annotations

import math

import numpy as np

CORNISH_FISHER_DF = 100.0
_TINY = 1e-300


def _betacf(a: np.ndarray, b: np.ndarray, x: np.ndarray, iters: int = 400) -> np.ndarray:
    """The continued fraction of I_x(a, b) (modified Lentz), which converges fast for x < (a+1) / (a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
    h = d.copy()
    for m in range(1, iters + 1):
        for aa in (m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m)),
                   -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m))):
            d = 1.0 + aa * d
            d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
            c = 1.0 + aa / c
            c = np.where(np.abs(c) < _TINY, _TINY, c)
            h = h * d * c
        if np.all(np.abs(d * c - 1.0) < 1e-15):
            break
    return h


def _upper_tail(t: np.ndarray, df: np.ndarray, log_beta: np.ndarray) -> np.ndarray:
    """P(T > t) for t >= 0: I_x(df/2, 1/2) / 2 with x = df / (df + t^2); each element on the side of the
    symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the continued fraction converges."""
    a, half = df / 2.0, np.full_like(df, 0.5)
    x = df / (df + t * t)
    with np.errstate(divide="ignore"):
        front = np.exp(a * np.log(x) + 0.5 * np.log1p(-x) - log_beta)
    direct = x < (a + 1.0) / (a + 2.5)
    ib = np.empty_like(x)
    ib[direct] = front[direct] * _betacf(a[direct], half[direct], x[direct]) / a[direct]
    other = ~direct
    ib[other] = 1.0 - front[other] * _betacf(half[other], a[other], 1.0 - x[other]) / 0.5
    return np.where(t == 0, 0.5, ib / 2.0)


def t_sf(t, df) -> np.ndarray:
    """P(T > t) for Student's t with `df` degrees of freedom (t, df broadcast)."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=float), _check_df(df))
    upper = _upper_tail(np.abs(t), df, _log_beta(df))
    return np.where(t >= 0, upper, 1.0 - upper)


def t_quantile(p: float, df) -> np.ndarray | float:
    """The p-quantile of Student's t with `df` degrees of freedom (df a number or an array; real df >= 1).
    Newton's method on log t from the normal quantile (df <= CORNISH_FISHER_DF), else the Cornish-Fisher
    expansion in 1/df (Abramowitz & Stegun 26.7.5), whose error there is below 1e-8."""
    if not 0 < p < 1:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    df_arr = np.atleast_1d(_check_df(df))
    tail = min(p, 1 - p)
    z = normal_quantile(1 - tail)
    q = np.asarray(_cornish_fisher(z, df_arr), dtype=float)
    small = df_arr <= CORNISH_FISHER_DF
    if np.any(small) and tail < 0.5:
        v = df_arr[small]
        log_beta = _log_beta(v)
        u = np.full_like(v, math.log(z))
        for _ in range(60):
            t = np.exp(u)
            sf = _upper_tail(t, v, log_beta)
            density = np.exp(-(v + 1) / 2 * np.log1p(t * t / v) - log_beta - 0.5 * np.log(v))
            step = (np.log(sf) - math.log(tail)) * sf / (density * t)
            u = u + step
            if np.max(np.abs(step)) < 1e-12:
                break
        q[small] = np.exp(u)
    q = np.where(tail == 0.5, 0.0, q) * (1.0 if p > 0.5 else -1.0)
    return float(q[0]) if np.ndim(df) == 0 else q.reshape(np.shape(df))


def normal_quantile(p: float) -> float:
    """The p-quantile of the standard normal (bisection on math.erfc)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(-mid / math.sqrt(2)) < p else (lo, mid)
    return (lo + hi) / 2


def _cornish_fisher(z: float, v: np.ndarray) -> np.ndarray:
    g = [(z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160]
    return z + sum(gk / v ** (k + 1) for k, gk in enumerate(g))


def _check_df(df) -> np.ndarray:
    df = np.array(df, dtype=float)
    if np.any(np.isnan(df)) or np.any(df < 1):
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return df


def _log_beta(df: np.ndarray) -> np.ndarray:
    """log B(df/2, 1/2), per element (math.lgamma: numpy has no gamma function)."""
    flat = [math.lgamma(v / 2) + math.lgamma(0.5) - math.lgamma(v / 2 + 0.5) for v in df.ravel().tolist()]
    return np.asarray(flat, dtype=float).reshape(df.shape)


__all__ = ["CORNISH_FISHER_DF", "normal_quantile", "t_quantile", "t_sf"]
