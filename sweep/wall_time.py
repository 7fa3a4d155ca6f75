"""Where a sweep's wall time went: trials computing, Ray's hand-overs, idle slots, start-up.

The summary's last lines (`timings`; all but the first only with -v) put the sweep's wall time
against its floor, what the trials alone need, and name Ray's per-trial latency; the spans
come from the progress view (sweep/progress.py, `Span`).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sweep.grid import GridPoint
from sweep.progress import Span, SweepState, fmt_duration


@dataclass(frozen=True)
class WallTime:
    """Where a sweep's wall time went, on `slots` concurrent trial slots.

    Every slot-second of the run is one of: a trial computing (its spans), Ray handing a free
    slot to the next trial (latency), a slot idle because nothing was left to start (the tail),
    or outside Tune (Ray's start-up before it, shutdown after the last trial). The floor,
    max(busy / slots, longest trial), is what the trials alone need; wall / floor is the
    sweep's efficiency."""

    wall: float
    slots: int
    busy: float
    """Sum of every attempt's computing time."""
    longest: float
    """The longest trial (its attempts together)."""
    cold: list[float]
    """Per slot: Tune's start -> its first trial computing (worker process start, imports)."""
    handovers: list[float]
    """Per later trial: its slot freed -> it computing (Ray's own per-trial latency)."""
    tail: float
    """Slot-seconds idle after each slot's last trial, until the last trial ended."""
    startup: float
    """Wall seconds before Tune began: starting (or joining) Ray, sizing the resources."""
    shutdown: float
    """Wall seconds after the last trial ended: Tune's end, Ray's shutdown, copying its logs."""

    @property
    def outside(self) -> float:
        return self.startup + self.shutdown

    @property
    def floor(self) -> float:
        return max(self.busy / self.slots, self.longest)

    @property
    def ratio(self) -> float:
        return self.wall / self.floor if self.floor else float("nan")


def wall_time(spans: Sequence[Span], slots: int, tune_start: float, started: float,
              ended: float) -> WallTime | None:
    """Attribute the wall time (see WallTime). Each attempt, in order of its start, is put on
    the slot freed last before it started: with trials waiting, a freed slot is what lets the
    next one start; with none waiting (a retry later), the slot idled until then and only the
    time since the last release counts as latency. The slots are taken as identical (with
    several resource shapes the split between latency and tail is approximate; busy, floor and
    ratio are exact)."""
    if not spans or slots < 1:
        return None
    free = [(tune_start, True)] * slots  # (free since, never used), sorted
    cold, handovers = [], []
    for span in sorted(spans, key=lambda s: s.start):
        # the slot whose release let this attempt start: the latest freed before it
        i = max(0, bisect.bisect_right(free, (span.start, True)) - 1)
        since, first = free.pop(i)
        (cold if first else handovers).append(max(0.0, span.start - since))
        bisect.insort(free, (span.end, False))
    last = max(s.end for s in spans)
    per_trial: dict[str, float] = {}
    for span in spans:
        per_trial[span.trial_id] = per_trial.get(span.trial_id, 0.0) + span.seconds
    return WallTime(wall=ended - started, slots=slots, busy=sum(s.seconds for s in spans),
                    longest=max(per_trial.values()), cold=cold, handovers=handovers,
                    tail=sum(last - since for since, _ in free if since <= last),
                    startup=tune_start - started, shutdown=ended - last)


def timings(state: SweepState, started: float, ended: float, ran: Sequence[GridPoint],
            verbose: bool = False) -> list[str]:
    """The sweep's wall time; with `verbose` (-v) also against its floor, and Ray's per-trial
    latency (WallTime): internals a user does not need by default."""
    n = len(ran)
    w = wall_time(state.spans, state.max_running, state.start, started, ended)
    lines = [f"wall time {fmt_duration(ended - started)} ({ended - started:.0f} s) for {n} trial"
             f"{'s' if n != 1 else ''}"]
    if w is None:
        return lines
    lines[0] += f"; trials computed {w.busy:.0f} s on {w.slots} slot{'s' if w.slots != 1 else ''}"
    if not verbose:
        return lines
    lines.append(f"wall / floor = {w.ratio:.3f}: floor {w.floor:.0f} s = max({w.busy:.0f} s / {w.slots} "
                 f"slots, longest trial {w.longest:.0f} s)")
    warm = (f"median {statistics.median(w.handovers):.2f} s, max {max(w.handovers):.2f} s over "
            f"{len(w.handovers)} handover{'s' if len(w.handovers) != 1 else ''}" if w.handovers
            else "no handovers")
    lines.append(f"Ray per-trial latency (slot free -> trial computing): {warm}; first trial on "
                 f"each slot {statistics.median(w.cold):.1f} s after Tune started (worker start-up)")
    lines.append(f"beyond the floor: Ray start-up {w.startup:.0f} s and shutdown {w.shutdown:.0f} s, "
                 f"worker start-up {sum(w.cold):.0f} slot-s, handovers {sum(w.handovers):.0f} slot-s, "
                 f"slots idle while the last trials ran {w.tail:.0f} slot-s")
    return lines
