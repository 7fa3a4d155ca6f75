"""Known answers for the report's statistics: t-intervals, McNemar, Holm, Bonett-Price, the
two-level bootstrap (p, TOST, coverage on a synthetic crossed design) and paired effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import (
    bonett_price_interval,
    bootstrap_p,
    effect_of,
    fmt_p,
    holm,
    mcnemar_exact,
    mean_ci,
    min_detectable,
    paired_bootstrap,
    paired_effect,
    percentile_interval,
    spearman,
    t_halfwidths,
    tost_normal,
    tost_p,
    two_level_bootstrap,
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


# ------------------------------------------------------------------ effects with both noises
def test_holm_known_answer():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04); NaN untouched
    assert holm([0.04, 0.01, float("nan"), 0.02]) == pytest.approx([0.04, 0.03, float("nan"), 0.04],
                                                                   nan_ok=True)
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([0.003]).tolist() == [0.003]


def test_bonett_price_known_answer():
    # b=5, c=0, n=46: pb = 6/48, pc = 1/48, d = 5/48, se = sqrt((7/48 - (5/48)^2) / 48)
    lo, hi = bonett_price_interval(5, 0, 46)
    d, se = 5 / 48, math.sqrt((7 / 48 - (5 / 48) ** 2) / 48)
    z = sps.norm.ppf(0.975)
    assert (lo, hi) == pytest.approx((d - z * se, d + z * se))
    # agreement on every image still leaves a width (about +-5.8 pp on 46 images)
    lo, hi = bonett_price_interval(0, 0, 46)
    assert lo == pytest.approx(-hi) and hi == pytest.approx(z * math.sqrt(2 / 48) / math.sqrt(48))


def test_bootstrap_p_and_tost_on_hand_made_replicates():
    r = np.array([-0.02, 0.01, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10])
    # one draw <= 0: p = 2 * (1 + 1) / 11
    assert bootstrap_p(r) == pytest.approx(4 / 11)
    assert bootstrap_p(np.zeros(9)) == 1.0  # no variation: never significant
    assert bootstrap_p(np.full(99, 0.3)) == pytest.approx(2 / 100)  # the +1 floor
    # TOST margin 0.1: #(r <= -0.1) = 0, #(r >= 0.1) = 1 -> max(1/11, 2/11)
    assert tost_p(r, 0.1) == pytest.approx(2 / 11)
    assert tost_p(r, 0.2) == pytest.approx(1 / 11)
    assert percentile_interval(np.arange(101) / 100, 0.9) == pytest.approx((0.05, 0.95))


@pytest.mark.parametrize(("est", "se", "margin"), [(0.0, 0.02, 0.05), (0.03, 0.02, 0.05), (-0.01, 0.03, 0.1)])
def test_tost_matches_the_normal_two_one_sided_tests(est, se, margin):
    # replicates from N(est, se^2): the bootstrap TOST p equals the normal TOST p
    r = np.random.default_rng(0).normal(est, se, 400_000)
    expected = max(sps.norm.sf((est + margin) / se), sps.norm.cdf((est - margin) / se))
    assert tost_normal(est, se, margin) == pytest.approx(expected)
    assert tost_p(r, margin) == pytest.approx(expected, abs=2e-3)


def test_two_level_bootstrap_resamples_both_seeds_and_images():
    one_seed = np.array([[1.0, 0.0, 1.0, 1.0]])
    assert two_level_bootstrap(one_seed, reps=50).shape == (50,)
    # seeds differ, images do not: only seed resampling moves the mean
    seeds_only = np.repeat(np.array([[0.0], [1.0]]), 5, axis=1)
    r = two_level_bootstrap(seeds_only, reps=2000)
    assert set(np.round(r, 6)) == {0.0, 0.5, 1.0}
    assert np.mean(r == 0.5) == pytest.approx(0.5, abs=0.04)
    # identical seeds: only image resampling moves it, as a one-level bootstrap over images would
    same = np.tile(np.array([1.0, 0.0, 0.0, 1.0]), (3, 1))
    assert np.std(two_level_bootstrap(same, reps=4000)) == pytest.approx(np.sqrt(0.25 / 4), rel=0.05)
    # pseudo columns are added to every seed
    assert two_level_bootstrap(np.zeros((2, 3)), reps=10, pseudo=(1.0, -1.0)).std() > 0
    assert two_level_bootstrap(one_seed, reps=100, seed=3).tolist() == \
        two_level_bootstrap(one_seed, reps=100, seed=3).tolist()
    with pytest.raises(ValueError):
        two_level_bootstrap(np.zeros((0, 3)))


def _crossed(rng, n_seeds, n_images, delta, seed_sd):
    """Transfer vs scratch correctness where each seed's true advantage varies around delta
    (uniform, sd seed_sd) and each image has its own difficulty: E[A - B] = delta exactly."""
    q = rng.uniform(0.3, 0.7, n_images)
    half = seed_sd * math.sqrt(3)
    theta = rng.uniform(delta - half, delta + half, n_seeds)
    pa, pb = q + theta[:, None] / 2, q - theta[:, None] / 2
    return rng.random(pa.shape) < pa, rng.random(pb.shape) < pb


def test_two_level_bootstrap_covers_where_an_images_only_interval_does_not():
    """Coverage on a synthetic crossed design (5 seeds x 46 images, true effect 10 pp, seeds
    differing by sd 15 pp): the interval over seeds and images covers about its nominal 95% or
    more (it is conservative: it counts the seed x image noise twice); resampling only images of
    the seed-averaged differences ignores seed noise and covers clearly less."""
    rng = np.random.default_rng(2024)
    hits_two, hits_img, n = 0, 0, 200
    for k in range(n):
        a, b = _crossed(rng, 5, 46, 0.10, 0.15)
        d = a.astype(float) - b
        lo, hi = percentile_interval(two_level_bootstrap(d, reps=1000, seed=k, pseudo=(1.0, -1.0)))
        hits_two += lo <= 0.10 <= hi
        lo, hi = percentile_interval(two_level_bootstrap(d.mean(axis=0, keepdims=True), reps=1000, seed=k,
                                                         pseudo=(1.0, -1.0)))
        hits_img += lo <= 0.10 <= hi
    assert hits_two / n >= 0.93
    assert hits_img / n <= 0.88
    assert hits_two - hits_img >= 0.06 * n


def test_one_seed_effect_uses_exact_mcnemar_and_an_adjusted_interval():
    # 5 images only A gets right, none only B, 41 agree: McNemar p = 2/32
    a = np.array([1] * 5 + [1] * 30 + [0] * 11)
    b = np.array([0] * 5 + [1] * 30 + [0] * 11)
    e = paired_effect(a[None, :], b[None, :])
    assert e.estimate == pytest.approx(5 / 46) and e.p_value == pytest.approx(0.0625)
    assert e.mcnemar is not None and (e.mcnemar.b, e.mcnemar.c) == (5, 0)
    assert (e.n_seeds, e.n_images) == (1, 46)
    # the adjusted interval is close to Bonett-Price's (and reaches 0, as the exact test says)
    bp = bonett_price_interval(5, 0, 46)
    assert e.lo == pytest.approx(bp[0], abs=0.01) and e.hi == pytest.approx(bp[1], abs=0.01)
    assert e.lo <= 0 < e.hi
    assert "McNemar" in e.method and "p = 0.062" in e.text()


def test_adjusted_bootstrap_p_tracks_the_exact_mcnemar_p():
    for n, b, c in [(46, 6, 1), (46, 8, 2), (65, 10, 3), (46, 2, 9)]:
        a = np.array([1] * b + [0] * c + [1] * (n - b - c))
        bb = np.array([0] * b + [1] * c + [1] * (n - b - c))
        boot = bootstrap_p(two_level_bootstrap((a - bb)[None, :].astype(float), pseudo=(1.0, -1.0)))
        assert boot == pytest.approx(mcnemar_exact(a, bb).p_value, abs=0.02)


def test_several_seeds_use_the_bootstrap_p_and_a_margin_gives_tost():
    rng = np.random.default_rng(5)
    a = rng.random((4, 200)) < 0.9
    b = a.copy()
    b[:, :3] = ~b[:, :3]  # three images differ in every seed
    e = paired_effect(a, b, margin=0.05)
    assert e.mcnemar is None and e.n_seeds == 4 and "two-level" in e.method
    assert e.tost is not None and e.tost < 0.05 and -0.05 < e.lo90 <= e.hi90 < 0.05
    assert e.lo <= e.estimate <= e.hi
    far = paired_effect(np.ones((3, 50)), np.zeros((3, 50)), margin=0.05)
    assert far.p_value < 0.01 and far.tost > 0.5 and far.lo > 0.05
    # any per-(seed, image) values: the mean, and a bootstrap p
    v = effect_of(np.full((2, 30), 0.5))
    assert v.estimate == pytest.approx(0.5) and v.p_value < 0.01 and v.mcnemar is None


def test_min_detectable_and_p_formatting():
    assert min_detectable(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert fmt_p(0.0123) == "p = 0.012" and fmt_p(0.0001) == "p < 0.001"
    assert fmt_p(float("nan"), "TOST p") == "TOST p n/a"
