"""Known answers for the report's statistics: t-intervals, McNemar, Wilson, Holm, the crossed
seeds x images mean (ANOVA parts, the interval, its dual p, TOST and non-inferiority) and the
exact Spearman p. Coverage by simulation: tests/unit/test_calibration.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.rank_correlation import spearman_exact
from analysis.stats import (
    crossed_accuracy,
    crossed_mean,
    effect_of,
    fmt_p,
    holm,
    mcnemar_exact,
    mean_ci,
    min_detectable,
    paired_effect,
    t_halfwidths,
    wilson,
)


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


def test_spearman_exact_p_is_the_permutation_p():
    r = spearman_exact([1, 2, 3, 4], [10, 20, 30, 40])
    assert r.rho == pytest.approx(1.0) and r.n == 4 and r.exact
    assert r.p_value == pytest.approx(2 / 24)  # 1 of 24 orderings each way
    three = spearman_exact([1, 2, 3], [3, 2, 1])
    assert three.rho == pytest.approx(-1.0) and three.p_value == pytest.approx(1 / 3)  # never < 0.001
    assert math.isnan(spearman_exact([1, 2], [1, 2]).rho)
    x = np.arange(12.0)
    y = x + np.random.default_rng(0).normal(0, 3, 12)
    big = spearman_exact(x, y)
    assert not big.exact and big.p_value == pytest.approx(sps.spearmanr(x, y).pvalue, abs=0.01)


def test_wilson_is_scipys():
    ci = sps.binomtest(40, 46).proportion_ci(0.95, method="wilson")
    assert wilson(40, 46) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(v) for v in wilson(0, 0))


# ------------------------------------------------------------------ effects with both noises
def test_holm_known_answer():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04); NaN untouched
    assert holm([0.04, 0.01, float("nan"), 0.02]) == pytest.approx([0.04, 0.03, float("nan"), 0.04],
                                                                   nan_ok=True)
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([0.003]).tolist() == [0.003]


def test_crossed_mean_known_answer():
    # 2 seeds x 3 images: MS_seed = 1/6, MS_image = 1/2, MS_resid = 1/6 (by hand)
    c = crossed_mean(np.array([[1, 0, 1], [0, 0, 1]]))
    assert c.mean == pytest.approx(0.5)
    assert c.var_seeds == pytest.approx((1 / 6) / 6) and c.var_images == pytest.approx((1 / 2 - 1 / 6) / 6)
    t1, t2 = sps.t.ppf(0.975, 1), sps.t.ppf(0.975, 2)
    assert c.half() == pytest.approx(math.sqrt(t1 ** 2 / 36 + t2 ** 2 / 18))
    # the dual p: the level at which the half-width reaches the estimate
    assert c.half(1 - c.level(0.3)) == pytest.approx(0.3)
    # one seed: the images only, t over images
    one = crossed_mean(np.array([[1.0, 0.0, 1.0, 1.0]]))
    assert one.var_images == pytest.approx(np.var([1, 0, 1, 1], ddof=1) / 4)
    assert one.half() == pytest.approx(sps.t.ppf(0.975, 3) * math.sqrt(one.var_images))
    # a floor keeps a width when every value agrees
    assert crossed_mean(np.zeros((3, 5)), floor=0.01).var_images == 0.01
    with pytest.raises(ValueError):
        crossed_mean(np.zeros((0, 3)))


def test_seed_only_variation_is_the_t_interval_across_seeds():
    """Seeds differ, images do not: the interval is the classic t-interval of the seed means
    (the image part only at its floor)."""
    x = np.repeat(np.array([[0.0], [0.2], [0.1]]), 40, axis=1)
    c = crossed_mean(x)
    ci = mean_ci(x.mean(axis=1))
    assert c.half() == pytest.approx(ci.half)


def test_paired_effect_interval_p_and_margins_come_from_one_calculation():
    rng = np.random.default_rng(5)
    a = rng.random((4, 200)) < 0.9
    b = a.copy()
    b[:, :3] = ~b[:, :3]  # three images differ in every seed
    e = paired_effect(a, b, margin=0.05)
    assert e.n_seeds == 4 and e.n_images == 200 and "seeds" in e.method
    assert e.lo <= e.estimate <= e.hi
    assert e.tost is not None and e.tost < 0.05 and -0.05 < e.lo90 <= e.hi90 < 0.05
    assert e.noninferiority <= e.tost
    # TOST p < alpha exactly when the 90% interval lies inside the margin
    for margin in (0.01, 0.02, 0.03, 0.05):
        m = paired_effect(a, b, margin=margin)
        assert (m.tost < 0.05) == (-margin < m.lo90 and m.hi90 < margin)
        assert (m.noninferiority < 0.05) == (m.lo90 > -margin)
    far = paired_effect(np.ones((3, 50)), np.zeros((3, 50)), margin=0.05)
    assert far.p_value < 0.01 and far.tost > 0.5 and far.lo > 0.05 and far.hi <= 1.0
    # any per-(seed, image) values: the mean and its p
    v = effect_of(np.full((2, 30), 0.5))
    assert v.estimate == pytest.approx(0.5) and v.p_value < 0.01
    with pytest.raises(ValueError):
        paired_effect(np.ones((2, 3)), np.ones((3, 3)))


def test_one_seed_effect_is_a_t_test_over_images_and_says_so():
    # 5 images only A gets right, none only B, 41 agree
    a = np.array([1] * 5 + [1] * 30 + [0] * 11)
    b = np.array([0] * 5 + [1] * 30 + [0] * 11)
    e = paired_effect(a[None, :], b[None, :])
    d = a - b
    se = np.std(d, ddof=1) / math.sqrt(46)
    assert e.estimate == pytest.approx(5 / 46) and e.se == pytest.approx(se)
    assert e.p_value == pytest.approx(2 * sps.t.sf(d.mean() / se, 45))
    assert "1 seed" in e.note and (e.n_seeds, e.n_images) == (1, 46)
    assert "p = 0.0" in e.text() and "1 seed × 46 images" in e.text()


def test_crossed_accuracy_stays_inside_0_100():
    x = np.ones((3, 46))
    x[0, :2] = 0
    acc = crossed_accuracy(x)
    assert acc.estimate == pytest.approx(136 / 138) and 0.9 < acc.lo < acc.estimate < acc.hi <= 1.0
    assert crossed_accuracy(np.zeros((3, 46))).hi > 0 == crossed_accuracy(np.zeros((3, 46))).lo


def test_min_detectable_and_p_formatting():
    assert min_detectable(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert fmt_p(0.0123) == "p = 0.012" and fmt_p(0.0001) == "p < 0.001"
    assert fmt_p(float("nan"), "TOST p") == "TOST p n/a"
