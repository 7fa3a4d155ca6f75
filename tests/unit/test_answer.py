"""The answer box (analysis.answer) and the provenance block (analysis.provenance) on synthetic
results with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import aggregate, answer, provenance
from analysis.load import load_results
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


def test_best_is_chosen_on_validation_and_intervals_are_clipped(two_sizes):
    res = two_sizes
    regimes = aggregate.regime_summary(res)
    top = answer.best_on_validation(regimes)
    assert (top["arch"], top["regime"]) == ("resnet18", "feature_extract")
    paired = answer.paired_by_size(res)
    box = answer.build(res, regimes, [], paired)
    assert box.best_label == "resnet18 · Feature extraction" and box.train_size == "all"
    test, ood = box.headlines
    r = regimes.set_index("regime").loc["feature_extract"]
    assert test.mean == pytest.approx(r["test_acc_mean"]) and test.n == 3
    assert test.lo == pytest.approx(max(0.0, r["test_acc_mean"] - r["test_acc_half"]))
    assert test.hi == pytest.approx(min(1.0, r["test_acc_mean"] + r["test_acc_half"]))
    assert 0.0 <= test.lo <= test.mean <= test.hi <= 1.0
    assert ood.split == "OOD (real)" and "95% t-interval across 3 seeds" in ood.how
    assert answer.Headline("test", 0.97, answer.clip(0.97 - 0.127), answer.clip(0.97 + 0.127), 2).interval \
        == "[84.3, 100.0]"


def test_effects_at_every_train_size_match_paired_tests_on_that_size(two_sizes, tmp_path):
    res = two_sizes
    paired = answer.paired_by_size(res)
    assert list(dict.fromkeys(paired["train_size"])) == ["5", "all"]  # smallest first
    effects = answer.effects(paired, res.ood_label)
    assert [(e.train_size, e.split) for e in effects] == [("5", "test"), ("5", "OOD (real)"),
                                                          ("all", "test"), ("all", "OOD (real)")]
    # the same numbers as analysis.aggregate on a results folder holding only that size
    only_small = tmp_path / "small"
    trials = results_mod.read_table(res.root, "trials").to_pandas()
    for tid in trials.loc[trials["train_size"] == "5", "trial_id"]:
        for table in results_mod.TABLES:
            rows = [r for r in results_mod.read_table(res.root, table).to_pylist() if r["trial_id"] == tid]
            results_mod.write_table_atomic(str(only_small), table, tid, rows)
    small = load_results(str(only_small))
    expected = aggregate.paired_tests(small).set_index("split").loc["test"]
    e = effects[0]
    assert e.diff == pytest.approx(expected["diff"]) and e.p == pytest.approx(expected["p_value"])
    assert (e.lo, e.hi) == pytest.approx((expected["boot_lo"], expected["boot_hi"]))
    assert e.n_images == 20 and e.size_label == "5/class" and effects[2].size_label == "all (60/class)"


def test_full_size_rows_are_aggregates_paired_tests(two_sizes):
    res = two_sizes
    got = answer.at_full_size(answer.paired_by_size(res), res)
    want = aggregate.paired_tests(res)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_answer_text_lists_sizes_and_claims(two_sizes):
    res = two_sizes
    regimes = aggregate.regime_summary(res)
    best = aggregate.best_models(res)
    from analysis.claims import check_claims

    claims = check_claims(res, regimes, best, aggregate.paired_tests(res, best))
    box = answer.build(res, regimes, claims, answer.paired_by_size(res))
    text = box.text()
    assert text.startswith("ANSWER (resnet18; 3 seeds; train sizes 5, all)")
    lines = text.splitlines()
    small = next(line for line in lines if "5/class" in line)
    assert small.count("p ") == 2 and "[" in small  # test and OOD cells
    assert all(c.statement in text for c in claims)
    assert text.index("Best on validation") < text.index("Transfer − scratch") < text.index("Claims:")


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


def test_clip_keeps_nan():
    assert np.isnan(answer.clip(float("nan")))
    assert answer.clip(1.2) == 1.0 and answer.clip(-0.3, -1, 1) == -0.3


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
