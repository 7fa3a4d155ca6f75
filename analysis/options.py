"""The analysis settings that change reported numbers or verdicts, as one value and one set of
command-line flags (`analysis.report` takes them; the report prints them)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

from analysis.bands import BAND_RULE_HELP, DEFAULT_RULE, BandRule
from analysis.configurations import parse_where
from analysis.stats import ALPHA
from analysis.verdicts import EQUIVALENCE_MARGIN, ClaimOptions
from trainables.errors import UserError


@dataclass(frozen=True)
class AnalysisOptions:
    band_rule: BandRule = DEFAULT_RULE
    claims: ClaimOptions = field(default_factory=ClaimOptions)
    external_logs: str | None = None
    external_lines: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    """--where: only the trials with these settings (analysis/configurations.py)."""

    def describe(self) -> str:
        return (f"--band-from-epoch {self.band_rule.spec} · --equivalence-margin "
                f"{self.claims.margin_text.removeprefix('±')} · alpha {self.claims.alpha:g}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bands, claims and external logs (docs/analysis.md)")
    g.add_argument("--band-from-epoch", default=DEFAULT_RULE.spec, metavar="RULE", help=BAND_RULE_HELP)
    g.add_argument("--equivalence-margin", type=float, default=100 * EQUIVALENCE_MARGIN, metavar="POINTS",
                   help="accuracy difference in percentage points within which two models count as "
                   "close (the equivalence test) and by which SqueezeNet may trail VGG11 (the "
                   "overparameterisation claim's non-inferiority test); fixed in advance, default "
                   f"{100 * EQUIVALENCE_MARGIN:g} (another value is flagged in the verdicts)")
    g.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="only the trials with this setting (repeatable), e.g. --where epochs=15: "
                   "for results that mix configurations, which the report refuses to average")
    g.add_argument("--external-logs", default=None, metavar="LOGS.csv",
                   help="per-epoch validation logs from outside the sweep (e.g. the study's "
                   "../shared/data/paper_study/val_curves.csv): their Table II and Fig. 2 are added")
    g.add_argument("--external-lines", default=None, metavar="LINES.csv",
                   help="per-architecture test/OOD lines for --external-logs (e.g. figure2_lines.csv)")


def from_args(args: argparse.Namespace) -> AnalysisOptions:
    """The options of parsed flags; bad values are UserErrors naming the flag."""
    rule = BandRule.parse(args.band_from_epoch)
    margin = float(args.equivalence_margin)
    if not math.isfinite(margin) or not 0 < margin < 100:
        raise UserError(f"--equivalence-margin {args.equivalence_margin} must be between 0 and 100 "
                        "(percentage points)")
    if args.external_lines and not args.external_logs:
        raise UserError("--external-lines needs --external-logs")
    return AnalysisOptions(rule, ClaimOptions(alpha=ALPHA, margin=margin / 100), args.external_logs,
                           args.external_lines, parse_where(getattr(args, "where", None)))
