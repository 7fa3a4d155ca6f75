"""The claims' verdict rules, on hand-made effects and on synthetic results with per-image
predictions written through tests/synthetic.py (the real schema and writer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import claims as C
from analysis import verdicts as V
from analysis.load import load_results
from analysis.stats import Effect
from tests.synthetic import write_synthetic_trial


def _eff(estimate: float, p: float, *, lo: float | None = None, hi: float | None = None,
         margin: float | None = None, tost: float | None = None, se: float = 0.03,
         noninferiority: float | None = None) -> Effect:
    lo = estimate - 0.05 if lo is None else lo
    hi = estimate + 0.05 if hi is None else hi
    return Effect(estimate, lo, hi, p, 3, 46, se, "test", margin, tost, lo + 0.01, hi - 0.01, noninferiority)


def _arch_effects(*effects: Effect | None) -> list[V.ArchEffect]:
    arch_effects = [V.ArchEffect(f"a{i}", e, note="" if e else "no data") for i, e in enumerate(effects)]
    return V.with_holm(arch_effects)


# ------------------------------------------------------------------------------ verdict rules
def test_difference_holds_only_when_significant_for_every_architecture():
    verdict, why = V.difference_verdict(_arch_effects(_eff(0.2, 0.001), _eff(0.1, 0.01)))
    assert verdict == V.HOLDS and "all 2" in why
    # intersection-union: each raw p < 0.05 suffices for "all", even where Holm would not
    assert V.difference_verdict(_arch_effects(_eff(0.1, 0.04), _eff(0.1, 0.03)))[0] == V.HOLDS


def test_difference_not_significant_is_not_shown():
    verdict, why = V.difference_verdict(_arch_effects(_eff(0.043, 0.2), _eff(0.02, 0.6)))
    assert verdict == V.NOT_SHOWN and "significant for 0 of 2" in why and "underpowered" in why
    # a large point estimate is still not shown without significance (the "+4.3 pp, 0 of 1" case)
    assert V.difference_verdict(_arch_effects(_eff(0.043, 0.3)))[0] == V.NOT_SHOWN


def test_difference_partly_reversed_and_mixed():
    # one significant after Holm (0.001 * 2), the other not: partly
    assert V.difference_verdict(_arch_effects(_eff(0.2, 0.001), _eff(0.05, 0.4)))[0] == V.PARTLY
    # significant only against the claim: does not hold
    verdict, why = V.difference_verdict(_arch_effects(_eff(-0.2, 0.001), _eff(0.01, 0.9)))
    assert verdict == V.FAILS and "reversed for 1" in why
    # for and against: mixed, not shown
    verdict, why = V.difference_verdict(_arch_effects(_eff(0.2, 0.001), _eff(-0.2, 0.001)))
    assert verdict == V.NOT_SHOWN and "mixed" in why
    # nothing testable
    assert V.difference_verdict(_arch_effects(None, None))[0] == V.UNTESTABLE
    # untestable architectures do not block "holds" for the ones with data
    assert V.difference_verdict(_arch_effects(_eff(0.2, 0.001), None))[0] == V.HOLDS


def test_equivalence_rules():
    inside = _eff(0.0, 0.9, lo=-0.03, hi=0.03, margin=0.05, tost=0.01)
    assert V.equivalence_verdict(inside)[0] == V.HOLDS
    beyond = _eff(-0.2, 0.001, lo=-0.3, hi=-0.1, margin=0.05, tost=0.99)
    assert V.equivalence_verdict(beyond)[0] == V.FAILS
    wide = _eff(0.0, 0.9, lo=-0.1, hi=0.1, margin=0.05, tost=0.3)
    verdict, why = V.equivalence_verdict(wide)
    assert verdict == V.NOT_SHOWN and "smallest difference" in why and "TOST p = 0.3" in why


def test_noninferiority_rules():
    assert V.noninferiority_verdict(_eff(0.0, 1.0, margin=0.05, noninferiority=0.01))[0] == V.HOLDS
    worse = _eff(-0.2, 0.001, lo=-0.3, hi=-0.1, margin=0.05, noninferiority=0.99)
    assert V.noninferiority_verdict(worse)[0] == V.FAILS
    verdict, why = V.noninferiority_verdict(_eff(0.03, 0.5, margin=0.05, noninferiority=0.2, se=0.04))
    assert verdict == V.NOT_SHOWN
    assert "smallest difference these data could detect (80% power) is about 11 pp" in why
    # better by a lot is still "not worse": the test is one-sided
    assert V.noninferiority_verdict(_eff(0.2, 0.001, margin=0.05, noninferiority=0.0001))[0] == V.HOLDS


def test_holds_names_the_architectures_tested_and_untested():
    effects = _arch_effects(_eff(0.2, 0.001), None)
    text = V.coverage_text(effects, ("a0", "a1", "resnet18"))
    assert text == "tested: a0; not tested: a1 (no data); the study's resnet18 (not run)"


# ------------------------------------------------------------------- on synthetic results
def hits(k: int, n: int, start: int = 0) -> list[bool]:
    """n images, k of them right: images start .. start+k-1 (mod n)."""
    return [((i - start) % n) < k for i in range(n)]


def _claims(root: Path, **opts) -> dict[str, V.Claim]:
    res = load_results(str(root))
    options = V.ClaimOptions(**opts) if opts else None
    return {c.key: c for c in C.check_claims(res, options)}


def _grid(root: Path, archs: dict[str, dict[str, list[bool]]], seeds: int = 3,
          ood: dict[str, dict[str, list[bool]]] | None = None, **kw) -> None:
    for arch, regimes in archs.items():
        for seed in range(seeds):
            for regime, test in regimes.items():
                o = (ood or {}).get(arch, {}).get(regime, hits(30, 65))
                write_synthetic_trial(root, arch, regime, seed, val=[0.5, 0.8 + 0.01 * seed], test=test,
                                      ood=o, **kw)


def test_significant_difference_holds_with_effect_interval_and_p(tmp_path):
    _grid(tmp_path, {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)},
                     "vgg11_bn": {"finetune": hits(42, 46), "scratch": hits(25, 46)}})
    claim = _claims(tmp_path)["transfer_beats_scratch_test"]
    assert claim.verdict == V.HOLDS
    assert [e.arch for e in claim.effects] == ["resnet18", "vgg11_bn"]
    r18 = claim.effects[0].effect
    assert r18.estimate == pytest.approx(24 / 46) and r18.lo < 24 / 46 < r18.hi and r18.p_value < 0.01
    assert (r18.n_seeds, r18.n_images) == (3, 46)
    assert "resnet18 +52.2 pp [" in claim.evidence and "3 seeds × 46 images" in claim.evidence
    assert "tested: resnet18, vgg11_bn; not tested: the study's" in claim.evidence
    assert claim.summary().startswith("holds — Transfer learning beats training from scratch")
    assert claim.test and claim.paper


def test_small_advantage_is_not_shown(tmp_path):
    # transfer right on 2 more of 46 test images in every seed: +4.3 pp, not significant
    _grid(tmp_path, {"resnet18": {"finetune": hits(40, 46), "scratch": hits(38, 46)}}, seeds=1)
    claim = _claims(tmp_path)["transfer_beats_scratch_test"]
    assert claim.verdict == V.NOT_SHOWN
    e = claim.effects[0].effect
    assert e.estimate == pytest.approx(2 / 46) and 0.05 < e.p_value < 0.5 and e.lo < 0 < e.hi
    assert "+4.3 pp" in claim.evidence and "1 seed" in claim.evidence
    assert "significant for 0 of 1" in claim.evidence


def test_scratch_significantly_better_does_not_hold(tmp_path):
    _grid(tmp_path, {"resnet18": {"finetune": hits(10, 46), "feature_extract": hits(12, 46),
                                  "scratch": hits(40, 46)}})
    c = _claims(tmp_path)
    assert c["transfer_beats_scratch_test"].verdict == V.FAILS
    assert c["feature_extract_beats_scratch"].verdict == V.FAILS


def test_accuracies_without_predictions_are_not_testable(tmp_path):
    for regime, acc in (("finetune", 0.95), ("scratch", 0.5)):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, test=acc)
    claim = _claims(tmp_path)["transfer_beats_scratch_test"]
    assert claim.verdict == V.UNTESTABLE and "predictions" in claim.evidence


def test_feature_extraction_close_to_fine_tuning_is_an_equivalence_test(tmp_path):
    same = hits(360, 400)
    near = list(same)
    near[0] = not near[0]  # one image of 400 differs
    _grid(tmp_path / "eq", {"squeezenet1_0": {"finetune": same, "feature_extract": near}})
    close = _claims(tmp_path / "eq")["feature_extract_close_to_finetune_squeezenet1_0"]
    assert close.verdict == V.HOLDS and "equivalent within ±5 pp" in close.evidence
    e = close.effects[0].effect
    assert e.margin == 0.05 and e.tost < 0.05 and -0.05 < e.lo90 and e.hi90 < 0.05
    # a 0.5-point margin is too tight for these data
    assert _claims(tmp_path / "eq", margin=0.005)["feature_extract_close_to_finetune_squeezenet1_0"].verdict \
        == V.NOT_SHOWN
    # one run on 46 images, one image different each way (difference 0): closeness within 5
    # points cannot be shown from so few images
    _grid(tmp_path / "one", {"squeezenet1_0": {"finetune": hits(40, 46), "feature_extract": hits(40, 46, 1)}},
          seeds=1)
    one = _claims(tmp_path / "one")["feature_extract_close_to_finetune_squeezenet1_0"]
    assert one.verdict == V.NOT_SHOWN and "smallest difference" in one.evidence
    # feature extraction far behind: does not hold
    _grid(tmp_path / "far", {"squeezenet1_0": {"finetune": hits(390, 400),
                                               "feature_extract": hits(200, 400)}})
    far = _claims(tmp_path / "far")["feature_extract_close_to_finetune_squeezenet1_0"]
    assert far.verdict == V.FAILS


def _overparam(root: Path, squeeze_ood: list[list[bool]], vgg_ood: list[list[bool]]) -> V.Claim:
    """Seeds of finetune (the transfer regime: best on validation) per architecture."""
    params = {"squeezenet1_0": 736_450, "resnet18": 11_177_538, "vgg11_bn": 128_781_634}
    for seed in range(len(squeeze_ood)):
        ood = {"squeezenet1_0": squeeze_ood[seed], "resnet18": hits(40, 65), "vgg11_bn": vgg_ood[seed]}
        for arch, n in params.items():
            write_synthetic_trial(root, arch, "finetune", seed, val=[0.9], test=hits(40, 46), ood=ood[arch],
                                  params=n)
            write_synthetic_trial(root, arch, "feature_extract", seed, val=[0.8], test=hits(40, 46),
                                  ood=hits(10, 65), params=2000)
            write_synthetic_trial(root, arch, "scratch", seed, val=[0.6], test=hits(30, 46), ood=hits(30, 65),
                                  params=n)
    return _claims(root)["overparameterisation"]


def test_overparameterisation_is_one_sided_non_inferiority_over_every_seed(tmp_path):
    same = _overparam(tmp_path / "same", [hits(50, 65)] * 3, [hits(50, 65)] * 3)
    assert same.verdict == V.HOLDS  # the same answers on 65 images and 3 seeds: not worse by 5 pp
    e = same.effects[0].effect
    assert e.n_seeds == 3 and e.noninferiority < 0.05 and "non-inferiority" in same.test
    assert "175x" in same.evidence and "Size trend across 3 architectures" in same.evidence
    assert "exact permutation p" in same.evidence and "margin ±5 pp." in same.evidence
    # squeezenet clearly better: still holds (one-sided), where a two-sided test would "fail"
    better = _overparam(tmp_path / "better", [hits(60, 65)] * 3, [hits(40, 65)] * 3)
    assert better.verdict == V.HOLDS and better.effects[0].effect.p_value < 0.05
    # squeezenet far behind: does not hold
    worse = _overparam(tmp_path / "worse", [hits(20, 65)] * 3, [hits(60, 65)] * 3)
    assert worse.verdict == V.FAILS
    # one seed, a few images apart each way: not shown, with the smallest detectable difference
    few = _overparam(tmp_path / "few", [hits(50, 65)], [hits(50, 65, 3)])
    assert few.verdict == V.NOT_SHOWN and "smallest difference" in few.evidence


def test_a_margin_other_than_the_default_is_flagged(tmp_path):
    _overparam(tmp_path, [hits(50, 65)] * 2, [hits(50, 65)] * 2)
    claim = _claims(tmp_path, margin=0.03)["overparameterisation"]
    assert "±3 pp (not the default 5 pp" in claim.evidence and "by 3 points" in claim.statement


def test_overparameterisation_needs_both_architectures(tmp_path):
    _grid(tmp_path, {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)}}, seeds=1)
    claim = _claims(tmp_path)["overparameterisation"]
    assert claim.verdict == V.UNTESTABLE and "squeezenet1_0 and vgg11_bn" in claim.evidence


@pytest.mark.parametrize("per_seed", [True, False])
def test_gap_larger_with_less_data(tmp_path, per_seed):
    """The difference of differences on the accuracy scale (the verdict) and on the log-odds
    scale, and whether the seeds drew their own training subsets (older rows did not)."""
    import math

    for seed in range(3):
        for size, per_class, (t, s) in (("5", 5.0, (40, 10)), ("all", 60.0, (44, 40))):
            subset = 1000 + seed if per_seed and size != "all" else None
            for regime, val, right in (("finetune", 0.8, t), ("scratch", 0.6, s)):
                write_synthetic_trial(tmp_path, "resnet18", regime, seed, val=[val], test=hits(right, 46),
                                      train_size=size, per_class=per_class,
                                      row={"train_subset_seed": subset})
    gap = _claims(tmp_path)["transfer_gap_larger_with_less_data"]
    # (40 - 10) - (44 - 40) = 26 images of 46
    assert gap.verdict == V.HOLDS and gap.effects[0].effect.estimate == pytest.approx(26 / 46)
    assert "train size 5 vs all" in gap.evidence

    def log_odds(k: int) -> float:  # 3 seeds x 46 answers, k right each, smoothed
        p = (3 * k + 0.5) / (3 * 46 + 1)
        return math.log(p / (1 - p))

    expected = log_odds(40) - log_odds(10) - log_odds(44) + log_odds(40)
    assert f"log-odds {expected:+.2f} [" in gap.evidence
    assert "conditional on the one train/val/test split" in gap.test
    recorded = "no per-seed training subsets recorded" in gap.evidence
    assert recorded != per_seed and ("each seed its own training subset" in gap.evidence) == per_seed


def test_gap_needs_two_sizes(tmp_path):
    _grid(tmp_path, {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)}}, seeds=1)
    assert _claims(tmp_path)["transfer_gap_larger_with_less_data"].verdict == V.UNTESTABLE


def test_claims_name_the_model_selection_rule(tmp_path):
    _grid(tmp_path / "default", {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)}}, seeds=1)
    claim = _claims(tmp_path / "default")["transfer_beats_scratch_test"]
    assert "best validation accuracy" in claim.evidence and "select_on" not in claim.evidence
    _grid(tmp_path / "loss", {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)}}, seeds=1,
          config={"select_on": "val_loss", "epochs": 2})
    claim = _claims(tmp_path / "loss")["transfer_beats_scratch_test"]
    assert "lowest validation loss (select_on=val_loss)" in claim.evidence


def test_claims_markdown_lists_verdict_evidence_and_test(tmp_path):
    _grid(tmp_path, {"resnet18": {"finetune": hits(44, 46), "scratch": hits(20, 46)}}, seeds=1)
    res = load_results(str(tmp_path))
    md = C.claims_markdown(C.check_claims(res))
    assert md.startswith(V.FIXED_IN_ADVANCE)
    assert "conditional on the one train/val/test split" in md.splitlines()[0]
    assert "- **holds** — Transfer learning beats training from scratch on test accuracy." in md
    assert "  - Test: per architecture, the transfer regime" in md


def test_claims_read_compacted_predictions_the_same(tmp_path):
    """One Parquet file per trial (the sweep's layout) or one compacted file (read through the
    filtered scan, with dictionaries unified across files): the same effects."""
    import pandas as pd

    from analysis.load import read_predictions
    from trainables.results import tables as results

    _grid(tmp_path, {"resnet18": {"finetune": hits(44, 46), "feature_extract": hits(40, 46, 3),
                                  "scratch": hits(20, 46, 7)}})
    before = {k: [e.effect for e in c.effects] for k, c in _claims(tmp_path).items()}
    res = load_results(str(tmp_path))
    merged = read_predictions(str(tmp_path), res.trials["trial_id"].tolist())
    for f in (tmp_path / "predictions").glob("*.parquet"):
        f.unlink()
    half = len(merged) // 2  # two parts, so their dictionaries differ
    results.write_table_atomic(str(tmp_path), "predictions", "part-0", merged.iloc[:half].to_dict("records"))
    results.write_table_atomic(str(tmp_path), "predictions", "part-1", merged.iloc[half:].to_dict("records"))
    after = {k: [e.effect for e in c.effects] for k, c in _claims(tmp_path).items()}
    assert after == before
    # FT and FE tie on mean validation accuracy and seeds: the study's regime order decides, fine-tune
    assert before["transfer_beats_scratch_test"][0].estimate == pytest.approx((44 - 20) / 46)
    assert isinstance(merged, pd.DataFrame)
