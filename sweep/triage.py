"""`python -m sweep.run --triage`: the linear probe of every requested architecture, ranked.

A probe trial costs about one forward pass over the images, so a researcher can see in minutes
which architectures are worth the full sweep. The triage runs the grid's architectures x train
sizes in the linear_probe regime only (one seed: the probe's seed changes nothing), in the same
experiment folder as a later full sweep (whose probe trials it then reuses), prints one ranking
per train size (analysis/probe_triage.py) and the command that fine-tunes the shortlist.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

from analysis import probe_triage
from analysis.load import is_full_size
from sweep.grid import GridPoint, GridSpec
from trainables.errors import UserError
from trainables.regimes import LINEAR_PROBE

REGIME = LINEAR_PROBE


def triage_spec(spec: GridSpec) -> GridSpec:
    """The sweep's grid reduced to the linear probe (one seed; architectures and sizes kept)."""
    if spec.regimes is not None and tuple(spec.regimes) != (REGIME,):
        raise UserError("--triage runs the linear probe only; leave out --regimes (the command "
                        "it prints afterwards runs the other regimes on the shortlist)")
    return dataclasses.replace(spec, regimes=(REGIME,), seeds=1)


def next_command(argv: Sequence[str], archs: Sequence[str]) -> str:
    """The user's own sweep command without --triage, for the shortlisted architectures."""
    out, skip = [], False
    for arg in argv:
        if skip and not arg.startswith("-"):
            continue
        skip = False
        if arg == "--triage" or arg.startswith("--archs="):
            continue
        if arg == "--archs":
            skip = True
            continue
        out.append(arg)
    return shlex.join(["python", "-m", "sweep.run", *out, "--archs", *archs])


def summary(results_root: str, grid: Sequence[GridPoint], argv: Sequence[str]) -> list[str]:
    """The ranking per train size, the largest last, and what to run next (the shortlist of
    the largest size)."""
    probes = probe_triage.read_probe_trials(results_root, [p.trial_id for p in grid])
    if probes.empty:
        return ["triage: no linear-probe trial finished; nothing to rank"]
    per_class = probes.groupby("train_size")["train_images_per_class"].mean()
    sizes = sorted(dict.fromkeys(p.config.train_size for p in grid),
                   key=lambda s: (is_full_size(s), per_class.get(s, 0.0)))  # the largest last
    out: list[str] = []
    chosen: list[str] = []
    for size in sizes:
        ranked = probe_triage.rank(probes[probes["train_size"] == size])
        if ranked.empty:
            continue
        out += ["", f"triage (linear probe), train size {size}:"]
        out += ["  " + line for line in probe_triage.lines(ranked)]
        chosen = ranked[ranked["shortlisted"]]["arch"].tolist()
    out += ["", f"next: {next_command(argv, chosen)}",
            "(the linear probe is not the study's feature extraction: docs/linear_probe.md)"]
    return out
