"""The report's linear-probe part: the triage ranking and "does ImageNet accuracy predict
transfer here?" (figure or one line, tables, claim). `build` computes it and writes its files;
`analysis.report` places `html` in report.html, `console` on the console and `claim` with the
other claims (the answer box's line on this question)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pandas as pd

from analysis import imagenet_transfer, probe_triage
from analysis.effects import Correctness
from analysis.load import Results
from analysis.render import figure_html
from analysis.verdicts import Claim

NOT_FE = ("The linear probe is not the study's feature extraction: the backbone stays in eval mode "
          "(BatchNorm on its ImageNet statistics), features are computed once per image without "
          "augmentation, and a logistic regression (L2 strength chosen on validation) replaces the "
          "SGD-trained head; the study's feature extraction trains the head for 30 epochs on "
          "augmented crops with BatchNorm statistics moving. Details: docs/linear_probe.md.")


@dataclass
class ProbeSection:
    html: str
    claim: Claim
    ranked: pd.DataFrame
    outcome: imagenet_transfer.Outcome
    files: list[Path] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


def build(res: Results, out_dir: Path, corr: Correctness | None = None) -> ProbeSection:
    """`corr`: the per-image correctness already read (analysis.effects), else read here."""
    probes = probe_triage.read_probe_trials(res.root, res.full["trial_id"].tolist())
    ranked = probe_triage.rank(probes)
    outcome = imagenet_transfer.analyse(res, corr)
    files = imagenet_transfer.write_figure(outcome, res.ood_label, out_dir)
    csv = out_dir / "imagenet_transfer.csv"
    corr = pd.DataFrame([c.__dict__ for c in outcome.correlations])
    (outcome.points.merge(corr, how="outer", on="regime", suffixes=("", "_corr")) if not corr.empty
     else outcome.points).to_csv(csv, index=False)
    files.append(csv)
    parts = [f"<h2>Linear-probe triage (train size {escape(res.full_size)})</h2>"]
    console = []
    if ranked.empty:
        parts.append("<p>No linear-probe trials in these results: <code>python -m sweep.run "
                     "--triage</code> ranks every requested architecture by its linear probe in "
                     "minutes.</p>")
    else:
        parts += [probe_triage.tab(ranked).html(), f'<p class="note">{escape(NOT_FE)}</p>']
        console += ["Linear-probe triage:"] + ["  " + line for line in probe_triage.lines(ranked)]
    parts.append("<h2>Does ImageNet accuracy predict transfer here?</h2>")
    if files[:-1]:
        parts.append(figure_html(files[0], "ImageNet accuracy vs transfer accuracy"))
    parts.append(f"<p>{escape(outcome.text)}</p>")
    for note in outcome.notes:
        parts.append(f'<p class="note">Note: {escape(note)}.</p>')
    if not outcome.points.empty:
        parts.append(imagenet_transfer.points_tab(outcome.points, res.ood_label).html())
    if outcome.correlations:  # none below 3 architectures: the text above says so
        parts.append(imagenet_transfer.correlations_tab(outcome.correlations, res.ood_label).html())
    console += [outcome.text] + [f"note: {n}" for n in outcome.notes]
    return ProbeSection("\n".join(parts) + "\n", outcome.claim, ranked, outcome, files, console)
