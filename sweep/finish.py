"""Step 3 of a sweep, its end: the summary, the models kept, the results compacted, the exit
status (0 every trial of the grid ok, 1 some failed or did not run)."""

from __future__ import annotations

import logging

from sweep.checkpoints import forget_finished
from sweep.compact import compact_after_sweep
from sweep.estimate import record_throughput
from sweep.failures import RunFailures
from sweep.keep_models import prune_models
from sweep.plan import SweepPlan
from sweep.preflight import Ready
from sweep.summary import describe, report_command, summarize_checked

log = logging.getLogger(__name__)


def finish(plan: SweepPlan, ready: Ready, failures: RunFailures, timing: list[str]) -> int:
    """Log what happened to every trial of the grid (and `timing`: the cluster file's machines
    that never joined, the wall-time lines), keep the models --keep-models asks for, compact the
    results; the exit status."""
    results = plan.experiment.results
    summary, rows = summarize_checked(results, ready.grid)
    failures.merge(summary)
    if ready.todo:  # a trial whose row is written but whose Ray callback never ran (the Tuner
        ran_now = {p.trial_id for p in ready.todo}  # stopped on an error) keeps no checkpoint
        forget_finished(plan.experiment, [t for t in summary.ok if t in ran_now])
    record_throughput([rows[p.trial_id] for p in ready.todo if p.trial_id in rows], ready.todo,
                      ready.manifest.counts(), plan.resources.cpus, plan.resources.gpus)
    lines = ["", *describe(summary, ready.grid)]
    if failures.recorded:
        lines.append(f"recorded {failures.recorded} failed trial row(s) from Ray's errors")
    for line in lines + failures.lines(summary.complete) + timing:
        log.info("%s", line)
    if plan.keep_models == "best":
        try:
            prune_models(results, ready.grid, rows)
        except OSError as exc:
            log.info("could not remove the models of non-best seeds (%s); the next run does", exc)
    compact_after_sweep(results)
    if plan.triage:
        from sweep import triage

        for line in triage.summary(results, ready.grid, plan.argv):
            log.info("%s", line)
    log.info("results: %s", results)
    log.info("report:  %s", report_command(results))
    if not summary.complete:
        log.info("rerun the same command to retry what failed or did not run; finished trials "
                 "are skipped")
        return 1
    return 0
