"""The answer box (analysis.answer) and the provenance block (analysis.provenance) on synthetic
results with known answers."""

from __future__ import annotations

import json

import pytest

from analysis import aggregate, answer, provenance, regime_effects
from analysis.claims import check_claims
from analysis.effects import Correctness
from analysis.load import load_results
from analysis.stats import crossed_accuracy, holm, paired_effect
from tests.synthetic import write_synthetic_trial
from trainables.presets import PRESETS
from trainables.results import tables as results_mod


def _correct(n: int, k: int) -> list[bool]:
    return [True] * k + [False] * (n - k)


@pytest.fixture
def two_sizes(tmp_path):
    """resnet18, fine-tune / feature extraction / scratch, 3 seeds, train sizes 5 and all.
    Feature extraction is best on validation; fine-tune is best on test (must not be chosen)."""
    root = tmp_path / "results"
    for seed in range(3):
        for size, per_class, lift in (("5", 5.0, 0.0), ("all", 60.0, 0.1)):
            plan = {"finetune": (0.80, 16), "feature_extract": (0.90, 14), "scratch": (0.60, 8)}
            for regime, (val, k) in plan.items():
                k_test = min(20, k + (2 if size == "all" else 0) + seed % 2)
                write_synthetic_trial(root, "resnet18", regime, seed, val=[0.5, val + lift / 2 + 0.01 * seed],
                                      train_size=size, per_class=per_class, test=_correct(20, k_test),
                                      ood=_correct(10, k_test // 2))
    return load_results(str(root))


def _box(res):
    corr = Correctness(res, res.trials["trial_id"].tolist())
    accs = regime_effects.regime_accuracies(res, corr)
    regimes = aggregate.with_accuracies(aggregate.regime_summary(res), accs)
    comparisons = regime_effects.compare(res, corr)
    claims = check_claims(res, None, corr, comparisons)
    return answer.build(res, regimes, accs, claims, comparisons, answer.broken_lines(res, corr)), corr


def test_best_is_chosen_on_validation_with_intervals_over_seeds_and_images(two_sizes):
    res = two_sizes
    regimes = aggregate.regime_summary(res)
    top = answer.best_on_validation(regimes)
    assert (top["arch"], top["regime"]) == ("resnet18", "feature_extract")
    box, corr = _box(res)
    assert box.best_label == "resnet18 · Feature extraction" and box.train_size == "all"
    test, ood = box.headlines
    ids = res.full[res.full["regime"] == "feature_extract"].sort_values("seed")["trial_id"].tolist()
    x, _, _ = corr.seeds_by_images(ids, "test")
    expected = crossed_accuracy(x)
    assert (test.accuracy.lo, test.accuracy.hi) == (expected.lo, expected.hi)
    assert test.mean == pytest.approx(x.mean()) and test.accuracy.n_seeds == 3
    assert 0.0 <= test.accuracy.lo < test.mean < test.accuracy.hi <= 1.0
    assert ood.split == "OOD (real)" and "95% interval over 3 seeds × 10 images" in ood.how


def test_comparisons_are_the_chosen_regime_against_scratch_over_all_seeds(two_sizes):
    res = two_sizes
    corr = Correctness(res, res.trials["trial_id"].tolist())
    comparisons = regime_effects.compare(res, corr)
    assert [(c.train_size, c.split) for c in comparisons] == [("5", "test"), ("5", "ood"), ("all", "test"),
                                                             ("all", "ood")]
    c = comparisons[0]
    assert c.transfer_regime == "feature_extract" and c.size_label == "5/class"
    assert comparisons[2].size_label == "all (60/class)"
    small = res.trials[res.trials["train_size"] == "5"].sort_values("seed")
    fe = small[small["regime"] == "feature_extract"]["trial_id"].tolist()
    sc = small[small["regime"] == "scratch"]["trial_id"].tolist()
    a, _, _ = corr.seeds_by_images(fe, "test")
    b, _, _ = corr.seeds_by_images(sc, "test")
    assert c.effect == paired_effect(a, b) and c.effect.n_seeds == 3 and c.effect.n_images == 20
    # Holm across every comparison shown
    adjusted = holm([x.effect.p_value for x in comparisons])
    assert [x.p_holm for x in comparisons] == pytest.approx(list(adjusted))
    frame = regime_effects.comparisons_frame(comparisons)
    assert frame.loc[0, "diff"] == pytest.approx(c.effect.estimate) and len(frame) == 4


def test_answer_text_opens_with_the_plain_sentence(two_sizes):
    box, _ = _box(two_sizes)
    text = box.text()
    assert text.startswith("On your 20 test images, pretrained resnet18 (feature extraction, 3 seeds) is ")
    c = next(c for c in box.comparisons if c.train_size == "all" and c.split == "test")
    assert f"by {abs(100 * c.effect.estimate):.0f} points" in box.plain
    assert "ANSWER (resnet18; 3 seeds; train sizes 5, all)" in text
    small = next(line for line in text.splitlines() if "5/class" in line)
    assert small.count("Holm p") == 2 and "[" in small  # test and OOD cells
    assert all(c.statement in text for c in box.claims)
    assert text.index("Best on validation") < text.index("Transfer − scratch") < text.index("Claims")


def test_plain_sentence_says_when_the_interval_includes_no_difference():
    from analysis.regime_effects import Comparison
    from analysis.stats import Effect

    def comp(split, est, lo, hi):
        e = Effect(est, lo, hi, 0.2, 3, 46, 0.05, "m")
        label = "test" if split == "test" else "OOD (synthetic shift)"
        return Comparison("mobilenet_v2", "all", 100.0, split, label, "feature_extract", e, e, e)

    text = answer.plain_sentence([comp("test", 0.304, 0.17, 0.43), comp("ood", 0.04, -0.03, 0.11)],
                                 "mobilenet_v2", "all")
    assert text == ("On your 46 test images, pretrained mobilenet_v2 (feature extraction, 3 seeds) is ahead "
                    "of training from scratch by 30 points (95% interval +17 to +43); on the 46 OOD "
                    "(synthetic shift) images ahead by 4, but the 95% interval -3 to +11 includes no "
                    "difference.")


def test_deviations_are_the_clis_own_list():
    """The report lists the same differences from the study as the sweep prints before training
    (trainables.presets.deviations), from the configs the trials recorded; fields this version
    does not know are named, not fatal."""
    from trainables.presets import deviations

    demo = [PRESETS["demo"].trial("mobilenet_v2", r, s, size) for r in ("finetune", "scratch")
            for s in range(3) for size in ("10", "all")]
    texts = [(c.to_json(), 1) for c in demo] + [(json.dumps({**demo[0].to_dict(), "old_switch": 1}), 1)]
    configs, unknown = provenance.trial_configs(texts)
    assert unknown == ["old_switch"] and len(configs) == len(demo) + 1
    got = deviations(configs, data="x", ood_kind="real", seeds=3, train_sizes=("10", "all"))
    assert "epochs 30 -> 15" in got and any(d.startswith("architectures outside the study") for d in got)


def test_provenance_reads_every_trial(tmp_path):
    root = tmp_path / "results"
    write_synthetic_trial(root, "resnet18", "finetune", 0)
    write_synthetic_trial(root, "resnet18", "scratch", 0, status="failed", error="boom")
    tid = write_synthetic_trial(root, "resnet18", "scratch", 1)
    row = next(r for r in results_mod.read_table(str(root), "trials").to_pylist() if r["trial_id"] == tid)
    config = PRESETS["smoke"].trial("resnet18", "scratch", 1).replace(lr=0.01)
    row.update(code_version="abc123", device="cpu:x86_64 (1 threads)",
               library_versions_json=json.dumps({"torch": "2.14.1", "numpy": "2.0"}),
               config_json=config.to_json(), overrides_json=json.dumps({"lr": 0.01}))
    results_mod.write_table_atomic(str(root), "trials", tid, [row])
    prov = provenance.collect(load_results(str(root)))
    assert prov.n_trials == 3 and prov.n_failed == 1 and prov.configs == 1
    assert prov.code_versions == [("abc123", 1)] and prov.devices == [("cpu:x86_64 (1 threads)", 1)]
    assert dict(prov.libraries) == {"numpy": "2.0", "torch": "2.14.1"}
    assert "epochs 30 -> 2" in prov.deviations and "lr 0.001 -> 0.01" in prov.deviations
    assert prov.overrides == [('{"lr": 0.01}', 1)]
    assert prov.presets[0][0] == "smoke" and PRESETS["smoke"].description in prov.presets[0][1]
    assert "code version: abc123" in prov.lines()


def test_claims_with_extra_fields_are_rendered_as_lines():
    """The claims contract is key, statement, verdict, evidence; extra fields (such as
    per-architecture effects with a text() method) are shown as lines, not as reprs."""
    from dataclasses import dataclass

    from analysis.render import claims_context

    @dataclass(frozen=True)
    class Effect:
        arch: str

        def text(self) -> str:
            return f"{self.arch} +5.0 pp [+1.0, +9.0]"

    @dataclass(frozen=True)
    class RichClaim:
        key: str
        statement: str
        verdict: str
        evidence: str
        test: str = ""
        effects: tuple = ()

    (ctx,) = claims_context([RichClaim("k", "A beats B", "holds", "transfer ahead.", "paired t-test",
                                        (Effect("resnet18"), Effect("vgg11_bn")))])
    assert ctx["evidence"] == "Transfer ahead" and ctx["css"] == "holds"
    assert ctx["extras"] == [("test", ["paired t-test"]),
                             ("effects", ["resnet18 +5.0 pp [+1.0, +9.0]", "vgg11_bn +5.0 pp [+1.0, +9.0]"])]
    (plain,) = claims_context([RichClaim("k", "A beats B", "a new verdict", "e")])
    assert plain["extras"] == [] and plain["css"] == "untestable"
