"""Known answers for the report's statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.stats import mcnemar_exact, mean_ci, paired_bootstrap, spearman, t_halfwidths


def test_mean_ci_t_interval_known_answer():
    ci = mean_ci([0.1, 0.2, 0.3])
    # s = 0.1, n = 3, t_{0.975, 2} = 4.302652729911275
    assert ci.mean == pytest.approx(0.2)
    assert ci.half == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))
    assert ci.n == 3
    assert ci.lo < ci.mean < ci.hi


def test_mean_ci_single_seed_has_no_interval_and_nans_are_dropped():
    one = mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.half) and one.n == 1
    assert mean_ci([0.5, float("nan"), 0.7]).n == 2
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)


def test_mean_ci_identical_seeds_have_zero_width():
    assert mean_ci([0.8, 0.8, 0.8, 0.8]).half == 0.0


def test_vectorised_halfwidths_match_scalar():
    data = [[0.1, 0.2, 0.3], [0.5, 0.9], [0.4]]
    std = np.array([np.std(d, ddof=1) if len(d) > 1 else np.nan for d in data])
    n = np.array([len(d) for d in data])
    half = t_halfwidths(std, n)
    assert half[0] == pytest.approx(mean_ci(data[0]).half)
    assert half[1] == pytest.approx(mean_ci(data[1]).half)
    assert math.isnan(half[2])


def test_mcnemar_exact_known_answer():
    # 8 images only A gets right, 2 only B; 5 both right, 5 both wrong.
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    m = mcnemar_exact(a, b)
    assert (m.b, m.c, m.n) == (8, 2, 20)
    # two-sided exact: 2 * P(X <= 2 | n=10, p=1/2) = 2 * (1 + 10 + 45) / 1024
    assert m.p_value == pytest.approx(112 / 1024)
    assert m.acc_a == pytest.approx(13 / 20) and m.acc_b == pytest.approx(7 / 20)
    assert m.diff == pytest.approx(0.3)


def test_mcnemar_no_discordant_pairs_and_symmetry():
    same = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert same.p_value == 1.0 and same.b == same.c == 0
    a, b = [1] * 9 + [0], [0] * 9 + [1]
    assert mcnemar_exact(a, b).p_value == pytest.approx(mcnemar_exact(b, a).p_value)
    assert mcnemar_exact([1] * 10, [0] * 10).p_value == pytest.approx(2 / 1024)


def test_mcnemar_rejects_unpaired_inputs():
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1, 0, 1])


def test_paired_bootstrap_known_cases():
    assert paired_bootstrap([1, 1, 0, 0], [1, 1, 0, 0]) == (0.0, 0.0, 0.0)
    assert paired_bootstrap([1] * 5, [0] * 5) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    a = rng.random(200) < 0.8
    b = rng.random(200) < 0.6
    diff, lo, hi = paired_bootstrap(a, b, reps=3000, seed=3)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo < diff < hi
    # normal approximation of the paired difference's standard error
    se = np.std(a.astype(float) - b.astype(float), ddof=1) / np.sqrt(200)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert paired_bootstrap(a, b, reps=3000, seed=3) == (diff, lo, hi)


def test_spearman():
    rho, p, n = spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and n == 4
    rho, _, _ = spearman([1, 2, 3, 4], [4, 3, 2, 1])
    assert rho == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])[0])
