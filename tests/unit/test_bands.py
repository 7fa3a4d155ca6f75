"""Table II's validation band: the rule (second half of each trial by default), the alternatives
behind --band-from-epoch, and the printed-band parser."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.bands import BandRule, format_band, parse_band, plateau_mask, val_bands
from tests.synthetic import STEP_LR_15
from trainables.errors import UserError

LR30 = [1e-3 * 0.1 ** ((e - 1) // 7) for e in range(1, 31)]  # StepLR(7, 0.1), 30 epochs


def _trial(tid: str, n: int, lr: list[float] | None = None, val: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": tid, "epoch": range(1, n + 1), "lr": lr or [1e-3] * n,
                         "val_acc": val or [0.5] * n})


def _epochs(frame: pd.DataFrame, rule: BandRule) -> dict[str, list[int]]:
    sel = frame[rule.mask(frame)]
    return {t: sorted(g["epoch"].tolist()) for t, g in sel.groupby("trial_id")}


def test_default_rule_is_the_second_half_of_each_trial():
    frame = pd.concat([_trial("a", 30), _trial("b", 15), _trial("c", 2), _trial("d", 1)])
    got = _epochs(frame.sample(frac=1.0, random_state=0), BandRule())  # row order does not matter
    assert got == {"a": list(range(16, 31)), "b": list(range(8, 16)), "c": [2], "d": [1]}
    assert BandRule.parse(None) == BandRule.parse("half") == BandRule()


def test_fixed_first_epoch_and_last_lr_step_rules():
    frame = pd.concat([_trial("a", 30, LR30), _trial("b", 15, STEP_LR_15), _trial("c", 4)])
    assert _epochs(frame, BandRule.parse("29")) == {"a": [29, 30], "b": [15], "c": [4]}  # never empty
    assert _epochs(frame, BandRule.parse(12)) == {"a": list(range(12, 31)), "b": [12, 13, 14, 15],
                                                  "c": [4]}
    last = BandRule.parse("last-lr-step")
    assert _epochs(frame, last) == {"a": [29, 30], "b": [15], "c": [1, 2, 3, 4]}


def test_plateau_is_after_the_last_lr_step():
    e = _trial("t", 30, LR30)
    assert e.loc[plateau_mask(e), "epoch"].tolist() == [29, 30]
    e15 = _trial("u", 15, STEP_LR_15)
    assert e15.loc[plateau_mask(e15), "epoch"].tolist() == [15]
    flat = _trial("v", 4, [0.01] * 4)
    assert plateau_mask(flat).all()
    both = pd.concat([e, e15, flat]).sample(frac=1.0, random_state=0)
    mask = plateau_mask(both)
    assert sorted(both.loc[mask, ["trial_id", "epoch"]].itertuples(index=False)) == [
        ("t", 29), ("t", 30), ("u", 15), ("v", 1), ("v", 2), ("v", 3), ("v", 4)]


@pytest.mark.parametrize("bad", ["0", "-3", "last", "1.5", "", "halves"])
def test_invalid_rules_are_user_errors_naming_the_flag(bad):
    with pytest.raises(UserError, match="--band-from-epoch"):
        BandRule.parse(bad)


def test_band_pools_band_epochs_over_seeds():
    rows = []
    for seed, (late, early) in enumerate([(0.98, 0.20), (1.00, 0.10)]):
        vals = [early] * 7 + [late] * 8  # epochs 1-7 are the first half of 15: not in the band
        rows += [{"trial_id": f"s{seed}", "arch": "a", "regime": "finetune", "train_size": "all",
                  "epoch": i + 1, "val_acc": v, "lr": r} for i, (v, r) in enumerate(zip(vals, STEP_LR_15,
                                                                                        strict=True))]
    bands = val_bands(pd.DataFrame(rows))
    assert bands.loc[0, "band"] == "98-100%"
    assert (bands.loc[0, "band_lo"], bands.loc[0, "band_hi"]) == (0.98, 1.0)
    assert (bands.loc[0, "plateau_first"], bands.loc[0, "plateau_last"]) == (8, 15)
    assert bands.loc[0, "band_rule"] == "half"
    # the earlier rule (after the last LR step) keeps only epoch 15 here; epoch 1 on takes everything
    assert val_bands(pd.DataFrame(rows), rule="last-lr-step").loc[0, "plateau_first"] == 15
    assert val_bands(pd.DataFrame(rows), rule="1").loc[0, "band"] == "10-100%"


def test_describe_says_it_is_a_convention():
    text = BandRule().describe()
    assert "second half" in text and "convention" in text and "not an exact" in text
    assert "--band-from-epoch 7" in BandRule.parse("7").describe()


@pytest.mark.parametrize(("lo", "hi", "text"), [
    (0.98, 1.0, "98-100%"), (0.97, 0.974, "97%"), (0.985, 0.985, "99%"), (0.5, 0.5, "50%"),
    (0.9849, 1.0, "98-100%"), (float("nan"), 0.9, "n/a"), (0.0, 0.004, "0%"),
])
def test_format_band(lo, hi, text):
    assert format_band(lo, hi) == text


@pytest.mark.parametrize(("text", "lohi"), [("98-100%", (98, 100)), ("100%", (100, 100)),
                                           (" 87 - 89 % ", (87, 89)), ("44", (44, 44)),
                                           ("70–75%", (70, 75))])
def test_parse_printed_band(text, lohi):
    assert parse_band(text) == lohi


def test_parse_printed_band_rejects_text():
    with pytest.raises(ValueError, match="not a band"):
        parse_band("about 90")
