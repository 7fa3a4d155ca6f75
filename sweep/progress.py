"""A compact live view of the sweep, in place of Ray's per-trial tables.

    [ 3:12] 4/9 done, 2 running, 3 pending, 0 failed | ETA 2:40
            best val acc   finetune  feature_extract  scratch
            mobilenet_v2      0.935            0.913    0.652

On a terminal the block is redrawn in place; in a log file it is printed when something changes
(at most every `interval` seconds for epoch updates). Trial completions, failures and retries are
printed as lines of their own. It also records when each trial attempt computed, on the
driver's clock (see Span), from which the sweep's summary derives its wall-time floor and Ray's
per-trial latency (sweep/wall_time.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray import tune

from sweep.failures import trial_error
from sweep.grid import GridPoint
from trainables.regimes import REGIMES


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def trial_label(trial: Any) -> str:
    """"resnet18 finetune seed 2 n=20" for anything with arch, regime, seed, train_size."""
    size = "" if trial.train_size == "all" else f" n={trial.train_size}"
    return f"{trial.arch} {trial.regime} seed {trial.seed}{size}"


@dataclass(frozen=True)
class Span:
    """One trial attempt's computing time on the driver's clock: from when its trainable began
    (the first result's arrival minus Ray's `time_this_iter_s`, which Ray measures from its
    first train() call on the actor) to when the driver saw it complete or fail."""

    trial_id: str
    start: float
    end: float
    outcome: str  # "done" | "failed"

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class TrialView:
    arch: str
    regime: str
    seed: int
    train_size: str
    epochs: int
    epoch: int = 0
    best_val_acc: float | None = None
    status: str = "pending"  # pending | running | done | failed
    started: float | None = None
    finished: float | None = None
    trial_seconds: float | None = None
    retries: int = 0
    computing_since: float | None = None
    """Driver time the current attempt began computing (None before its first result)."""

    @property
    def label(self) -> str:
        return trial_label(self)


@dataclass
class SweepState:
    """Plain data behind the view (no Ray objects), so it can be rendered and tested alone."""

    trials: dict[str, TrialView] = field(default_factory=dict)
    previous_best: dict[tuple[str, str], float] = field(default_factory=dict)
    """Best val acc per (arch, regime) of trials finished by earlier runs (skipped now)."""
    skipped: int = 0
    start: float = field(default_factory=time.time)
    max_running: int = 0
    """Most trials seen running at once (the sweep's effective concurrency)."""
    spans: list[Span] = field(default_factory=list)
    """Every finished or failed attempt's computing time, in completion order."""

    @classmethod
    def for_run(cls, todo: Iterable[GridPoint], finished_rows: Iterable[dict[str, Any]],
                skipped: int) -> SweepState:
        """The trials this run starts, and the best val acc of those finished earlier."""
        state = cls(skipped=skipped)
        for row in finished_rows:
            key = (row["arch"], row["regime"])
            state.previous_best[key] = max(state.previous_best.get(key, -1.0),
                                           row["best_val_acc"] or 0)
        for p in todo:
            c = p.config
            state.trials[p.trial_id] = TrialView(c.arch, c.regime, c.seed, c.train_size, c.epochs)
        return state

    def close_span(self, tid: str, now: float, outcome: str) -> None:
        view = self.trials.get(tid)
        if view is None or view.computing_since is None:
            return  # failed before its first result: when it began computing is unknown
        self.spans.append(Span(tid, view.computing_since, now, outcome))
        view.computing_since = None

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "running": 0, "pending": 0, "failed": 0}
        for t in self.trials.values():
            out[t.status] += 1
        return out

    def eta_seconds(self, now: float) -> float | None:
        """Remaining epochs over this run's epoch throughput so far."""
        done_epochs = sum(t.epochs if t.status in ("done", "failed") else t.epoch
                          for t in self.trials.values())
        started = [t.started for t in self.trials.values() if t.started is not None]
        if not done_epochs or not started:
            return None
        rate = done_epochs / max(now - min(started), 1e-6)
        remaining = sum(0 if t.status in ("done", "failed") else t.epochs - t.epoch
                        for t in self.trials.values())
        return remaining / rate

    def best_table(self) -> dict[tuple[str, str], float]:
        best = dict(self.previous_best)
        for t in self.trials.values():
            if t.best_val_acc is not None and t.best_val_acc >= 0:
                key = (t.arch, t.regime)
                best[key] = max(best.get(key, -1.0), t.best_val_acc)
        return best

    def render(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        c = self.counts()
        total = len(self.trials)
        skipped = f" (+{self.skipped} finished earlier)" if self.skipped else ""
        head = (f"[{fmt_duration(now - self.start):>6}] {c['done']}/{total} done{skipped}, "
                f"{c['running']} running, {c['pending']} pending, {c['failed']} failed "
                f"| ETA {fmt_duration(self.eta_seconds(now)) if c['done'] + c['failed'] < total else '0:00'}")
        best = self.best_table()
        archs = list(dict.fromkeys([a for a, _ in best] + [t.arch for t in self.trials.values()]))
        regimes = [r for r in REGIMES if any(r == t.regime for t in self.trials.values())
                   or any(r == k[1] for k in best)]
        width = max([len("best val acc")] + [len(a) for a in archs])
        pad = " " * 9
        lines = [head, pad + f"{'best val acc':<{width}}" + "".join(f"  {r:>15}" for r in regimes)]
        for arch in archs:
            cells = "".join(f"  {best[(arch, r)]:>15.3f}" if (arch, r) in best else f"  {'--':>15}"
                            for r in regimes)
            lines.append(pad + f"{arch:<{width}}" + cells)
        return lines


class SweepProgress(tune.Callback):
    """Feeds SweepState from Tune's callbacks and prints it."""

    def __init__(self, state: SweepState, results_root: str | None = None,
                 out: TextIO | None = None, interval: float = 30.0, live: bool | None = None) -> None:
        self.state = state
        self.results_root = results_root
        self._out = out  # None: whatever sys.stdout is when writing (Tune pickles callbacks)
        self.interval = interval
        self.live = self.out.isatty() if live is None else live
        self._last_print = 0.0
        self._drawn = 0
        self._dirty = True

    # ------------------------------------------------------------------ output
    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def event(self, line: str) -> None:
        self._erase()
        self.out.write(line + "\n")
        self._dirty = True
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        now = time.time()
        min_gap = 1.0 if self.live else self.interval
        if not force and (not self._dirty or now - self._last_print < min_gap):
            return
        self._erase()
        lines = self.state.render(now)
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines) if self.live else 0
        self._last_print = now
        self._dirty = False

    # ------------------------------------------------------------------ tune hooks
    @staticmethod
    def _tid(trial) -> str:
        return trial.config["point"]["trial_id"]

    def _view(self, trial) -> TrialView | None:
        return self.state.trials.get(self._tid(trial))

    def _running(self, view: TrialView) -> None:
        if view.status != "running":
            view.status = "running"
            view.started = view.started or time.time()
            self.state.max_running = max(self.state.max_running, self.state.counts()["running"])
            self._dirty = True

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        view = self._view(trial)
        if view is not None:
            self._running(view)

    def on_trial_result(self, iteration, trials, trial, result: dict[str, Any], **info) -> None:
        view = self._view(trial)
        if view is None:
            return
        self._running(view)  # a reused actor starts its next trial without on_trial_start
        if view.computing_since is None:
            view.computing_since = time.time() - float(result.get("time_this_iter_s") or 0.0)
        view.epoch = int(result.get("epoch", view.epoch))
        if result.get("best_val_acc") is not None:
            view.best_val_acc = float(result["best_val_acc"])
        if result.get("trial_seconds") is not None:
            view.trial_seconds = float(result["trial_seconds"])
        self._dirty = True
        self.draw()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        view = self._view(trial)
        if view is None:
            return
        view.status, view.finished, view.epoch = "done", time.time(), view.epochs
        self.state.close_span(self._tid(trial), view.finished, "done")
        last = trial.last_result or {}
        extra = "".join(f" {k.replace('_acc', '')} {last[k]:.3f}" for k in ("test_acc", "ood_acc")
                        if last.get(k) is not None)
        resumed = (f", resumed at epoch {last['resumed_from_epoch']}"
                   if last.get("resumed_from_epoch") else "")
        self.event(f"  done    {view.label}: best val {view.best_val_acc or 0:.3f}{extra} "
                   f"({fmt_duration(view.finished - (view.started or view.finished))}{resumed})")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        view = self._view(trial)
        if view is None:
            return
        view.retries += 1
        view.status = "pending"
        self.state.close_span(self._tid(trial), time.time(), "failed")
        self.event(f"  retry   {view.label} after an error at epoch {view.epoch + 1} "
                   f"(attempt {view.retries + 1}; continues from its last checkpoint)")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        view = self._view(trial)
        if view is None:
            return
        view.status, view.finished = "failed", time.time()
        self.state.close_span(self._tid(trial), view.finished, "failed")
        error = (recorded_error(self.results_root, trial.config["point"]["trial_id"])
                 or trial_error(trial) or "see the trial's error.txt")
        self.event(f"  FAILED  {view.label}: {error}")

    def on_step_end(self, iteration, trials, **info) -> None:
        self.draw()

    def on_experiment_end(self, trials, **info) -> None:
        if self._dirty:
            self.draw(force=True)
        self._drawn = 0


def recorded_error(results_root: str | None, tid: str) -> str | None:
    """The last line of the error run_trial wrote to the trial's `trials` row, if any (a worker
    killed outright writes none)."""
    if results_root is None:
        return None
    import pyarrow.parquet as pq

    from trainables.results import storage

    try:
        fs, base = storage.resolve(results_root)
        rows = pq.read_table(f"{base}/trials/{tid}.parquet", filesystem=fs,
                             columns=["status", "error"]).to_pylist()
    except Exception:  # absent or unreadable: fall back to Ray's own error
        return None
    errors = [r["error"] for r in rows if r["status"] != "ok" and r["error"]]
    return errors[0].strip().splitlines()[-1][:300] if errors else None
