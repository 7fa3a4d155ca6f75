"""Numbers behind every table, figure and claim, computed once from the loaded results.

"Best model" means one thing everywhere: the trial with the highest best-val accuracy; ties go
to the lower validation loss at that epoch, then to the earlier best epoch (it reached that
accuracy sooner), and only then to the trial id, which just makes an exact tie reproducible.
The seed never decides. It is chosen on validation data only, so its test and OOD accuracy are
honest estimates.
"""

from __future__ import annotations

import pandas as pd

from analysis.bands import BandRule, val_bands
from analysis.load import Results, arch_order
from analysis.stats import mcnemar_exact, mean_ci, paired_bootstrap, t_halfwidths
from trainables.archs import source_of
from trainables.regimes import SCRATCH, TRANSFER_REGIMES, regime_order
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
    trainable params, mean +/- CI of each metric."""
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
    out = summary.merge(params, on=["arch", "regime"]).merge(total, on=["arch", "regime"])
    out = out.merge(bands, on=["arch", "regime"], how="left").merge(source, on=["arch", "regime"])
    out.insert(2, "train_size", res.full_size)
    return _order(out)


def best_models(res: Results) -> pd.DataFrame:
    """Per architecture: the best transfer trial and the best scratch trial (full train size),
    and the OOD/test accuracy mean +/- CI across seeds of each seed's best transfer trial."""
    full = res.full
    rows = []
    transfer = full[full["regime"].isin(TRANSFER_REGIMES)]
    scratch = full[full["regime"] == SCRATCH]
    best_t = pick_best(transfer, ["arch"]).set_index("arch") if not transfer.empty else None
    best_s = pick_best(scratch, ["arch"]).set_index("arch") if not scratch.empty else None
    per_seed_t = pick_best(transfer, ["arch", "seed"]) if not transfer.empty else transfer
    for arch in arch_order(full["arch"].unique().tolist()):
        row: dict = {"arch": arch}
        for tag, best, pool in (("transfer", best_t, per_seed_t),
                                (SCRATCH, best_s, scratch)):
            if best is not None and arch in best.index:
                b = best.loc[arch]
                row.update({f"{tag}_trial": b["trial_id"], f"{tag}_regime": b["regime"],
                            f"{tag}_seed": int(b["seed"]), f"{tag}_val": b["best_val_acc"],
                            f"{tag}_test": b["test_acc"], f"{tag}_ood": b["ood_acc"],
                            f"{tag}_model_path": b["model_path"]})
            sub = pool[pool["arch"] == arch]
            for metric in ("test_acc", "ood_acc"):
                ci = mean_ci(sub[metric].to_numpy(dtype=float))
                short = metric.removesuffix("_acc")
                row.update({f"{tag}_{short}_mean": ci.mean, f"{tag}_{short}_half": ci.half,
                            f"{tag}_{short}_n": ci.n})
        rows.append(row)
    return pd.DataFrame(rows)


def best_overall(res: Results, arch: str) -> pd.Series | None:
    sub = res.full[res.full["arch"] == arch]
    return None if sub.empty else rank(sub).iloc[0]


def seed_paired(res: Results) -> pd.DataFrame:
    """Per architecture and metric: mean +/- CI across seeds of (best transfer regime of that
    seed, chosen on val) minus (scratch, same seed). Seeds without both are skipped."""
    full = res.full
    transfer = pick_best(full[full["regime"].isin(TRANSFER_REGIMES)], ["arch", "seed"])
    scratch = full[full["regime"] == SCRATCH]
    if transfer.empty or scratch.empty:
        return pd.DataFrame(columns=["arch", "metric", "diff_mean", "diff_half", "n"])
    both = transfer.merge(scratch, on=["arch", "seed"], suffixes=("_t", "_s"))
    rows = []
    for arch in arch_order(both["arch"].unique().tolist()):
        sub = both[both["arch"] == arch]
        for metric in ("test_acc", "ood_acc"):
            ci = mean_ci((sub[f"{metric}_t"] - sub[f"{metric}_s"]).to_numpy(dtype=float))
            rows.append({"arch": arch, "metric": metric, "diff_mean": ci.mean, "diff_half": ci.half,
                         "n": ci.n})
    return pd.DataFrame(rows)


def paired_tests(res: Results, best: pd.DataFrame | None = None, reps: int = 2000) -> pd.DataFrame:
    """Best transfer vs best scratch model per architecture on the same test and OOD images:
    exact McNemar test and a paired-bootstrap 95% interval of the accuracy difference."""
    best = best_models(res) if best is None else best
    cols = ["arch", "split", "transfer_trial", "transfer_regime", "scratch_trial", "n", "acc_transfer",
            "acc_scratch", "diff", "boot_lo", "boot_hi", "b", "c", "p_value"]
    if best.empty or "transfer_trial" not in best or "scratch_trial" not in best:
        return pd.DataFrame(columns=cols)
    pairs = best.dropna(subset=["transfer_trial", "scratch_trial"])
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    preds = res.predictions(pairs["transfer_trial"].tolist() + pairs["scratch_trial"].tolist())
    rows = []
    for _, p in pairs.iterrows():
        t = preds[preds["trial_id"] == p["transfer_trial"]]
        s = preds[preds["trial_id"] == p["scratch_trial"]]
        joined = t.merge(s, on=["split", "path"], suffixes=("_t", "_s"))
        for split in ("test", "ood"):
            sub = joined[joined["split"] == split]
            if sub.empty:
                continue
            a = sub["correct_t"].to_numpy(dtype=bool)
            b = sub["correct_s"].to_numpy(dtype=bool)
            m = mcnemar_exact(a, b)
            diff, lo, hi = paired_bootstrap(a, b, reps=reps, seed=0)
            rows.append({"arch": p["arch"], "split": split, "transfer_trial": p["transfer_trial"],
                         "transfer_regime": p["transfer_regime"], "scratch_trial": p["scratch_trial"],
                         "n": m.n, "acc_transfer": m.acc_a, "acc_scratch": m.acc_b, "diff": diff,
                         "boot_lo": lo, "boot_hi": hi, "b": m.b, "c": m.c, "p_value": m.p_value})
    return pd.DataFrame(rows, columns=cols)


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
