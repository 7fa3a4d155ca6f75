"""Numbers behind every table, figure and claim, computed once from the loaded results.

"Best model" means one thing everywhere: the trial with the highest best-val accuracy; ties go
to the lower validation loss at that epoch, then to the earlier best epoch (it reached that
accuracy sooner), and only then to the trial id, which just makes an exact tie reproducible.
The seed never decides. It is chosen on validation data only, so its test and OOD accuracy are
honest estimates.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.bands import BandRule, val_bands
from analysis.load import Results, arch_order
from analysis.stats import t_halfwidths
from trainables.archs import source_of
from trainables.regimes import SCRATCH, STUDY_REGIMES, TRANSFER_REGIMES, regime_order
from trainables.results.tables import BEST_TRIAL_ORDER

METRICS = ("best_val_acc", "test_acc", "ood_acc")
BEST_SORT = ([c for c, _ in BEST_TRIAL_ORDER], [asc for _, asc in BEST_TRIAL_ORDER])


def rank(df: pd.DataFrame) -> pd.DataFrame:
    """Trials sorted best first (see module docstring)."""
    return df.sort_values(BEST_SORT[0], ascending=BEST_SORT[1], na_position="last", kind="stable")


def pick_best(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The best trial per group (one row per group)."""
    if df.empty:
        return df
    return rank(df).groupby(by, sort=False, as_index=False).head(1).reset_index(drop=True)


def agg_ci(df: pd.DataFrame, by: list[str], cols: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Per group: {col}_mean, {col}_half (95% t half-width across the group's trials), {col}_n."""
    g = df.groupby(by, sort=False)
    out = g.size().rename("n").reset_index()
    for col in cols:
        stats = g[col].agg(["mean", "std", "count"]).reset_index(drop=True)
        out[f"{col}_mean"] = stats["mean"].to_numpy()
        out[f"{col}_half"] = t_halfwidths(stats["std"].to_numpy(), stats["count"].to_numpy())
        out[f"{col}_n"] = stats["count"].to_numpy()
    return out


def _order(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    archs = arch_order(df["arch"].unique().tolist())
    key = {a: i for i, a in enumerate(archs)}
    cols = ["_a"]
    df = df.assign(_a=df["arch"].map(key))
    if "regime" in df:
        rkey = {r: i for i, r in enumerate(regime_order(df["regime"].unique().tolist()))}
        df = df.assign(_r=df["regime"].map(rkey))
        cols.append("_r")
    if "x" in df:
        cols.append("x")
    return df.sort_values(cols, kind="stable").drop(columns=["_a", "_r"], errors="ignore").reset_index(
        drop=True)


def regime_summary(res: Results, band_rule: BandRule | str | None = None) -> pd.DataFrame:
    """Arch x regime at the full train size: band (`band_rule`, default analysis.bands.DEFAULT_RULE),
    trainable params, mean, t half-width across seeds and count of each metric, the lowest and
    highest best-val accuracy. `with_accuracies` adds the test and OOD intervals over seeds and
    images."""
    full = res.full
    summary = agg_ci(full, ["arch", "regime"])
    params = full.groupby(["arch", "regime"], sort=False)["trainable_params"].median().rename(
        "trainable_params").reset_index()
    total = full.groupby(["arch", "regime"], sort=False)["total_params"].median().rename(
        "total_params").reset_index()
    epochs = res.epochs[res.epochs["train_size"] == res.full_size]
    bands = val_bands(epochs, by=["arch", "regime"], rule=band_rule)
    named = full["arch"].map(source_of)  # external logs carry no source column
    full = full.assign(source=full["source"].fillna(named) if "source" in full else named)
    source = full.groupby(["arch", "regime"], sort=False)["source"].first().reset_index()
    spread = full.groupby(["arch", "regime"], sort=False)["best_val_acc"].agg(["min", "max"]).add_prefix(
        "best_val_acc_").reset_index()
    out = summary.merge(params, on=["arch", "regime"]).merge(total, on=["arch", "regime"])
    out = out.merge(spread, on=["arch", "regime"]).merge(bands, on=["arch", "regime"], how="left")
    out = out.merge(source, on=["arch", "regime"])
    out.insert(2, "train_size", res.full_size)
    return _order(out)


def with_accuracies(regimes: pd.DataFrame, accuracies: pd.DataFrame) -> pd.DataFrame:
    """`regimes` with {test,ood}_acc_lo/_hi/_images from analysis.regime_effects.regime_accuracies
    (the crossed seeds x images interval). Groups without per-image predictions keep NaN there;
    the tables then show the mean without an interval."""
    out = regimes.copy()
    for split in ("test", "ood"):
        acc = accuracies[accuracies["split"] == split].set_index(["arch", "regime"])
        key = pd.MultiIndex.from_frame(out[["arch", "regime"]])
        for col, src in (("lo", "lo"), ("hi", "hi"), ("images", "n_images")):
            out[f"{split}_acc_{col}"] = acc[src].reindex(key).to_numpy() if not acc.empty else math.nan
    return out


def best_regime(trials: pd.DataFrame, regimes: tuple[str, ...]) -> str | None:
    """Of `regimes`, the one with the highest mean best-val accuracy over its trials (ties: more
    trials, then the study's regime order); None when none was run. Validation only: the
    chosen regime's test and OOD numbers stay honest."""
    sub = trials[trials["regime"].isin(regimes)]
    if sub.empty:
        return None
    g = sub.groupby("regime")["best_val_acc"].agg(["mean", "size"]).reset_index()
    order = {r: i for i, r in enumerate(regime_order(g["regime"].tolist()))}
    g = g.assign(_o=g["regime"].map(order)).sort_values(["mean", "size", "_o"],
                                                        ascending=[False, False, True], kind="stable")
    return str(g.iloc[0]["regime"])


def regime_choice(res: Results) -> pd.DataFrame:
    """Per architecture at the full train size: its transfer regime (analysis.regime_effects:
    the higher mean best-val accuracy over seeds) and scratch, with the mean over seeds of each
    one's test and OOD accuracy (Table II's OOD columns, Fig. 2's lines), and the regime best on
    validation of all the study's regimes (`top_regime`, its mean test accuracy `top_test`)."""
    full = res.full
    rows = []
    for arch in arch_order(full["arch"].unique().tolist()):
        sub = full[full["arch"] == arch]
        row: dict = {"arch": arch}
        for tag, regime in (("transfer", best_regime(sub, TRANSFER_REGIMES)), (SCRATCH, SCRATCH),
                            ("top", best_regime(sub, STUDY_REGIMES))):
            g = sub[sub["regime"] == regime] if regime else sub.iloc[:0]
            row.update({f"{tag}_regime": regime if not g.empty else None, f"{tag}_n": len(g),
                        f"{tag}_test": g["test_acc"].mean() if len(g) else math.nan,
                        f"{tag}_ood": g["ood_acc"].mean() if len(g) else math.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def best_overall(res: Results, arch: str) -> pd.Series | None:
    sub = res.full[res.full["arch"] == arch]
    return None if sub.empty else rank(sub).iloc[0]


def learning_curves(res: Results) -> pd.DataFrame:
    """Per arch x regime x train size: x = mean training images per class, metrics mean +/- CI."""
    t = res.trials
    out = agg_ci(t, ["arch", "regime", "train_size"], cols=("test_acc", "ood_acc", "best_val_acc"))
    x = t.groupby(["arch", "regime", "train_size"], sort=False)["train_images_per_class"].mean()
    out = out.merge(x.rename("x").reset_index(), on=["arch", "regime", "train_size"])
    return _order(out)


def epoch_curves(res: Results) -> pd.DataFrame:
    """Val accuracy per epoch at the full train size: one row per trial and epoch."""
    e = res.epochs[res.epochs["train_size"] == res.full_size]
    return e.sort_values(["arch", "regime", "seed", "trial_id", "epoch"], kind="stable")


SELECT_ON_TEXT = {"val_acc": "best validation accuracy", "val_loss": "lowest validation loss",
                  "last": "last epoch"}


def model_selection(res: Results) -> str:
    """How each trial's kept model was chosen, for reports and claims: its config's `select_on`
    (named as recorded) or, when no trial records one, the best validation accuracy."""
    values = res.select_on
    if not values:
        return "each trial's epoch with the best validation accuracy"
    named = [f"{SELECT_ON_TEXT.get(v, v)} (select_on={v})" for v in values]
    return f"each trial's epoch chosen on {' / '.join(named)}"
