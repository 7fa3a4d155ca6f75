"""Time before compute: the expected wall time of a grid on a cluster, before anything runs.

Each trial's work is the cost model's GFLOP (sweep/schedule.py, `expected_gflop`); its time is
that work over a throughput in GFLOP/s per CPU (CPU trials) or per GPU (GPU trials, times the
trial's GPU share). The throughput is, in order:

1. measured on this machine: after every sweep, the trials that ran there record their GFLOP per
   second of trial time per CPU or GPU (`record_throughput`), cached in
   `$XDG_CACHE_HOME/feature-reuse/throughput.json` (default `~/.cache`) under the host name;
2. else a stated rate (`STATED_GFLOPS`), said as such in the line.

The trials are then put on the cluster's concurrent slots longest first (the order the sweep
uses), and the wall time is when the last slot ends. Ray's start-up, data decoding outside the
trials and a contended machine are not in it: it is an estimate, and the line says which rate
it used.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.grid import GridPoint
from sweep.progress import fmt_duration
from sweep.resources import ClusterInfo, ResourcePlan, TrialResources
from sweep.schedule import expected_gflop, longest_first

log = logging.getLogger(__name__)

STATED_GFLOPS = {"cpu": 10.0, "gpu": 2000.0}
"""GFLOP/s per CPU and per GPU when nothing was measured here. CPU: a training step at batch 6
on one thread of this project's shared 2-core machine ran resnet18, vgg11_bn and densenet161 at
10-12 GFLOP/s (mobilenet_v2, all depthwise convolutions, at 3; the demo's 20 trials at 4.7
over their whole trial time). GPU: not measured, an estimate (batch 6 keeps a GPU far below its
peak); the first sweep on a machine replaces these with what its trials measured."""


MIN_RECORDED_GFLOP = 50.0
"""Trials computing less than this (the smoke preset's: seconds, mostly start-up) say nothing
about throughput and are not recorded."""


def cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "feature-reuse" / "throughput.json"


@dataclass(frozen=True)
class Throughput:
    gflops: Mapping[str, float]
    """GFLOP/s per CPU ("cpu") and per GPU ("gpu")."""
    source: Mapping[str, str]
    """How each rate was found, in words."""


def kind(res: TrialResources) -> str:
    return "gpu" if res.gpu else "cpu"


def units(res: TrialResources) -> float:
    """What a rate per CPU or per GPU is multiplied by for one trial."""
    return res.gpu if res.gpu else res.cpu


def throughput(host: str | None = None) -> Throughput:
    """This machine's measured rates where there are some, else the stated ones."""
    host = host or socket.gethostname()
    try:
        measured = json.loads(cache_file().read_text()).get(host, {})
    except (OSError, ValueError):
        measured = {}
    gflops, source = {}, {}
    for k, stated in STATED_GFLOPS.items():
        m = measured.get(k) or {}
        if m.get("gflops", 0) > 0:
            gflops[k] = float(m["gflops"])
            source[k] = (f"measured here: {m['gflops']:.1f} GFLOP/s per {k.upper()} over "
                         f"{m['trials']} trials, {cache_file()}")
        else:
            gflops[k] = stated
            source[k] = f"stated rate {stated:g} GFLOP/s per {k.upper()}, not measured here"
    return Throughput(gflops, source)


def slots(resources: ResourcePlan, cluster: ClusterInfo, archs: Sequence[str]) -> int:
    """Concurrent trials: what the cluster holds of the grid's most common trial shape."""
    shapes = [resources.for_arch(a) for a in archs]
    res = max(shapes, key=shapes.count)
    fit = cluster.cpus / res.cpu if res.cpu else float("inf")
    if res.gpu:
        fit = min(fit, cluster.gpus / res.gpu)
    return max(1, int(fit + 1e-9))


def expected_wall_s(points: Sequence[GridPoint], counts: Mapping[str, Mapping[str, int]],
                    resources: ResourcePlan, n_slots: int, rates: Throughput) -> float:
    """The grid's makespan: trials longest first, each on the slot that frees first."""
    ends = [0.0] * n_slots
    for p in longest_first(points, counts):
        res = resources.for_arch(p.config.arch)
        i = ends.index(min(ends))
        ends[i] += expected_gflop(p.config, counts) / (rates.gflops[kind(res)] * units(res))
    return max(ends, default=0.0)


def estimate_line(points: Sequence[GridPoint], counts: Mapping[str, Mapping[str, int]],
                  resources: ResourcePlan, cluster: ClusterInfo) -> str:
    """`expected wall time: ...` for the trials to run, saying which rate it used."""
    if not points:
        return "expected wall time: 0 (every trial finished earlier)"
    rates = throughput()
    n = slots(resources, cluster, [p.config.arch for p in points])
    wall = expected_wall_s(points, counts, resources, n, rates)
    used = dict.fromkeys(kind(resources.for_arch(p.config.arch)) for p in points)
    return (f"expected wall time: about {fmt_duration(wall)} ({wall / 3600:.1f} h) for "
            f"{len(points)} trials on {n} concurrent slot{'s' if n != 1 else ''} "
            f"[{cluster.describe()}]; estimated from the cost model at "
            + "; ".join(rates.source[k] for k in used))


def record_throughput(rows: Sequence[Mapping], points: Sequence[GridPoint],
                      counts: Mapping[str, Mapping[str, int]], cpus_per_trial: float,
                      gpus_per_trial: float | None, host: str | None = None) -> None:
    """Cache this machine's rates from the trials that ran here now (`rows`: their trials
    rows; only ok ones of at least MIN_RECORDED_GFLOP count). A GPU rate needs the trials' GPU
    share: with `auto` shares (`gpus_per_trial` None) only CPU trials are recorded."""
    host = host or socket.gethostname()
    by_id = {p.trial_id: p for p in points}
    work: dict[str, list[float]] = {}
    for row in rows:
        p = by_id.get(row.get("trial_id"))
        if p is None or row.get("status") != "ok" or not row.get("total_seconds"):
            continue
        gflop = expected_gflop(p.config, counts)
        if gflop < MIN_RECORDED_GFLOP:
            continue
        on_gpu = str(row.get("device") or "").startswith("cuda")
        share = gpus_per_trial if on_gpu else cpus_per_trial
        if not share:
            continue
        w = work.setdefault("gpu" if on_gpu else "cpu", [0.0, 0.0, 0])
        w[0] += gflop
        w[1] += row["total_seconds"] * share
        w[2] += 1
    if not work:
        return
    path = cache_file()
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
        cache.setdefault(host, {}).update(
            {k: {"gflops": g / s, "trials": int(n)} for k, (g, s, n) in work.items() if s > 0})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1) + "\n")
        os.replace(tmp, path)
    except (OSError, ValueError, AttributeError) as exc:  # a cache only: results are written
        log.info("could not cache this machine's throughput in %s (%s)", path, exc)
