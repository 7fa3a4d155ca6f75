"""Which architectures to fine-tune: the linear-probe triage ranking (`sweep.run --triage`, report).

`rank` takes the linear-probe trials of one train size and returns one row per architecture,
best first:

  val_acc      the probe's validation accuracy at its kept C. That C was chosen on the same
               validation images, so the number is optimistic, alike for every architecture.
  val_lo/hi    Wilson score 95% interval over the validation images.
  p_vs_best    exact two-sided McNemar test of this probe against the top one, on the same
               validation images (which each kept regression gets right: `probe_grid_json`).
  finetune     True for the top architecture and for every one not significantly worse than it
               (p_vs_best >= ALPHA): the validation set cannot tell it from the best, so it is
               worth fine-tuning too.

Order: validation accuracy, then validation loss (lower first), then the study's architecture
order. Test and OOD accuracy are shown beside it and never used.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from analysis.load import arch_order
from analysis.stats import ALPHA, mcnemar_exact, wilson
from analysis.tables import Tab
from trainables.regimes import LINEAR_PROBE
from trainables.results.tables import read_table

PROBE = LINEAR_PROBE
COLUMNS = ["trial_id", "arch", "regime", "seed", "train_size", "status", "best_val_acc",
           "best_val_loss", "test_acc", "ood_acc", "probe_c", "probe_grid_json", "total_seconds",
           "train_images_per_class"]


def read_probe_trials(root: str, trial_ids: list[str] | None = None) -> pd.DataFrame:
    """The finished linear-probe trials of a results root (optionally only these ids)."""
    df = read_table(root, "trials", columns=COLUMNS).to_pandas()
    df = df[(df["status"] == "ok") & (df["regime"] == PROBE)]
    if trial_ids is not None:
        df = df[df["trial_id"].isin(set(trial_ids))]
    return df.reset_index(drop=True)


def imagenet_top1_of(arch: str) -> float | None:
    """The weights' ImageNet top-1 from torchvision's metadata, for study and derived models alike;
    None when it is not known (timm weights, or a name this machine cannot resolve)."""
    from trainables.archs import resolve
    from trainables.errors import UserError
    from trainables.weights import imagenet_top1

    try:
        return imagenet_top1(resolve(arch))
    except UserError:
        return None


def rank(probes: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture (its lowest seed: the probe's seed changes nothing), best first."""
    cols = ["rank", "arch", "train_size", "val_acc", "val_lo", "val_hi", "val_images", "val_loss",
            "probe_c", "p_vs_best", "shortlisted", "test_acc", "ood_acc", "seconds", "imagenet_top1"]
    if probes.empty:
        return pd.DataFrame(columns=cols)
    one = probes.sort_values(["arch", "seed"]).groupby("arch", sort=False).head(1)
    order = {a: i for i, a in enumerate(arch_order(one["arch"].tolist()))}
    one = one.assign(_o=one["arch"].map(order)).sort_values(
        ["best_val_acc", "best_val_loss", "_o"], ascending=[False, True, True], kind="stable")
    curves = [json.loads(text) if isinstance(text, str) else {} for text in one["probe_grid_json"]]
    correct = [np.asarray(c.get("val_correct", []), dtype=bool) for c in curves]
    rows = []
    for i, (row, curve) in enumerate(zip(one.to_dict("records"), curves, strict=True)):
        n = int(curve.get("val_images", len(correct[i])))
        k = int(correct[i].sum()) if len(correct[i]) == n else round(row["best_val_acc"] * n)
        lo, hi = wilson(k, n)
        same = len(correct[i]) == len(correct[0]) and len(correct[0]) > 0
        p = 1.0 if i == 0 else (mcnemar_exact(correct[0], correct[i]).p_value if same else math.nan)
        rows.append({"rank": i + 1, "arch": row["arch"], "train_size": row["train_size"],
                     "val_acc": row["best_val_acc"], "val_lo": lo, "val_hi": hi, "val_images": n,
                     "val_loss": row["best_val_loss"], "probe_c": row["probe_c"], "p_vs_best": p,
                     "shortlisted": bool(i == 0 or (math.isfinite(p) and p >= ALPHA)),
                     "test_acc": row["test_acc"], "ood_acc": row["ood_acc"],
                     "seconds": row["total_seconds"], "imagenet_top1": imagenet_top1_of(row["arch"])})
    return pd.DataFrame(rows, columns=cols)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def table_rows(ranked: pd.DataFrame, labels: dict[str, str] | None = None) -> list[list[str]]:
    """Display rows; `labels` adds a note after an architecture's name (e.g. RANDOM WEIGHTS)."""
    labels = labels or {}
    out = []
    for r in ranked.to_dict("records"):
        top1 = r["imagenet_top1"]
        out.append([str(r["rank"]), r["arch"] + (f" ({labels[r['arch']]})" if r["arch"] in labels else ""),
                    f"{_pct(r['val_acc'])} [{_pct(r['val_lo'])}, {_pct(r['val_hi'])}]",
                    f"{r['val_loss']:.3f}", f"{r['probe_c']:g}",
                    "-" if r["rank"] == 1 else _p(r["p_vs_best"]), "yes" if r["shortlisted"] else "no",
                    _pct(r["test_acc"]), _pct(r["ood_acc"]),
                    "n/a" if top1 is None or not math.isfinite(top1) else f"{top1:.1f}",
                    f"{r['seconds']:.0f}"])
    return out


HEADER = ["#", "Architecture", "Val acc % [95% CI]", "Val loss", "C", "p vs #1", "Fine-tune",
          "Test %", "OOD %", "ImageNet top-1 %", "Probe s"]
NOTE = ("Linear probe (frozen ImageNet features + logistic regression, C chosen on validation). "
        "Ranked on validation accuracy, then validation loss; interval: Wilson 95% over the "
        "validation images; p: exact McNemar against #1 on the same validation images. Fine-tune: "
        f"#1 and every probe not significantly worse (p >= {ALPHA:g}). Test and OOD accuracy are "
        "shown, never used to rank.")


def recommendation(ranked: pd.DataFrame) -> str:
    if ranked.empty:
        return "no linear-probe results to rank"
    chosen = ranked[ranked["shortlisted"]]["arch"].tolist()
    n_val = int(ranked["val_images"].iloc[0])
    if len(chosen) == len(ranked) and len(ranked) > 1:
        return (f"fine-tune all {len(chosen)}: on {n_val} validation images none is significantly "
                f"worse than {chosen[0]} (a larger validation split would separate them)")
    rest = f" and {', '.join(chosen[1:])} (not significantly worse)" if len(chosen) > 1 else ""
    return f"fine-tune {chosen[0]}{rest}"


def lines(ranked: pd.DataFrame, labels: dict[str, str] | None = None) -> list[str]:
    """The console table and the recommendation."""
    rows = [HEADER] + table_rows(ranked, labels)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return text + [recommendation(ranked)]


def tab(ranked: pd.DataFrame) -> Tab:
    return Tab(HEADER, table_rows(ranked), NOTE + " " + recommendation(ranked).capitalize() + ".")
