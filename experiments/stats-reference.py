"""Reference values for experiment/stats.ts, computed independently with numpy and scipy.

    python3 experiments/stats-reference.py > test/fixtures/stats-reference.json

Writes fixed data (seeded) and what numpy/scipy compute on it: quantiles (numpy's default
linear, R type 7), exact two-sided permutation p-values of a difference in means
(scipy.stats.permutation_test), Cliff's delta from the Mann-Whitney U (scipy.stats.mannwhitneyu),
the bimodality coefficient from scipy's bias-corrected skewness and excess kurtosis, and percentile
bootstrap intervals (scipy.stats.bootstrap) of the mean and the p99 over blocks of values.
Holm's adjustment is checked against the worked example in the test itself.
"""
import json

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20261204)
r3 = lambda values: [round(float(v), 3) for v in values]

# Latency-like data: a unimodal skewed sample and a two-mode mixture (sizes where n·p is never a
# whole number for the quantiles checked: at a whole number, float rounding decides between two values).
unimodal = r3(rng.gamma(shape=9.0, scale=40.0, size=397))
bimodal = r3(np.concatenate([rng.normal(300, 25, 250), rng.normal(520, 30, 153)]))

def quantiles(values):
    return {str(p): float(np.quantile(values, p, method="linear")) for p in (0.5, 0.95, 0.99)}

def bc(values):
    n = len(values)
    g1 = stats.skew(values, bias=False)
    g2 = stats.kurtosis(values, bias=False)
    return float((g1 ** 2 + 1) / (g2 + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))

def mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)

def exact_permutation(a, b):
    result = stats.permutation_test((a, b), mean_diff, permutation_type="independent", alternative="two-sided",
                                    n_resamples=np.inf, vectorized=True)
    return float(result.pvalue)

run_means = {
    "a": r3(rng.normal(350, 8, 5)),
    "b": r3(rng.normal(362, 8, 5)),
    "c": r3(rng.normal(351, 8, 6)),
    "d": r3(rng.normal(349, 8, 7)),
}

def cliff(a, b):
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    return float(2 * u / (len(a) * len(b)) - 1)

# 40 blocks of 25 values; block means vary (a slow stretch now and then).
blocks = [r3(rng.normal(300 + 30 * rng.standard_normal(), 20, 25)) for _ in range(40)]
block_means = np.array([np.mean(block) for block in blocks])
mean_ci = stats.bootstrap((block_means,), np.mean, method="percentile", n_resamples=20000, random_state=1).confidence_interval
index = np.arange(len(blocks))

def pooled_p99(idx):
    pooled = np.concatenate([blocks[i] for i in np.asarray(idx, dtype=int)])
    return np.quantile(pooled, 0.99, method="linear")

p99_ci = stats.bootstrap((index,), pooled_p99, method="percentile", n_resamples=5000, vectorized=False, random_state=2).confidence_interval

print(json.dumps({
    "source": f"numpy {np.__version__}, scipy {scipy.__version__} (experiments/stats-reference.py)",
    "unimodal": {"values": unimodal, "quantiles": quantiles(unimodal), "bc": bc(unimodal),
                  "skew": float(stats.skew(unimodal, bias=False)), "kurtosis": float(stats.kurtosis(unimodal, bias=False))},
    "bimodal": {"values": bimodal, "quantiles": quantiles(bimodal), "bc": bc(bimodal)},
    "runMeans": run_means,
    "permutation": {"ab": exact_permutation(run_means["a"], run_means["b"]), "cd": exact_permutation(run_means["c"], run_means["d"]),
                     "ac": exact_permutation(run_means["a"], run_means["c"])},
    "cliff": {"unimodal_bimodal": cliff(unimodal, bimodal), "ab": cliff(run_means["a"], run_means["b"])},
    "blocks": blocks,
    "bootstrap": {"meanCi95": [float(mean_ci.low), float(mean_ci.high)], "p99Ci95": [float(p99_ci.low), float(p99_ci.high)]},
}))
