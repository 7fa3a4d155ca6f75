"""The sweep CLI: its options (`build_parser`) and its three steps, plan (sweep/plan.py) ->
preflight (sweep/preflight.py) -> run (sweep/tuner.py, sweep/finish.py)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time

from sweep import cluster_nodes
from sweep.checkpoints import tidy_before_run
from sweep.console import console_output
from sweep.dry_run import show_dry_run
from sweep.failures import RunFailures
from sweep.grid import seeds_option
from sweep.memory_check import add_flags
from sweep.plan import SweepPlan, make_plan
from sweep.preflight import Ready, report, run_preflight
from sweep.ray_session import sigterm_as_interrupt
from trainables import presets as overrides
from trainables.archs import ARCHS
from trainables.errors import CommandParser, UserError
from trainables.presets import PRESETS
from trainables.regimes import REGIMES

DESCRIPTION = """\
The study's grid, architecture x regime x seed x train size, on Ray Tune; results in Parquet.

Layout under <storage>/<name>/: manifest.json (the split, made once), results/ (Parquet tables
epochs, trials and predictions, merged into a few files at the end; models/), ray/ (Ray Tune's
trial folders and logs). Running the same command again skips finished trials and finishes the
rest; an interrupted trial continues from its last checkpoint (at most --checkpoint-every
minutes old). Exit status: 0 all trials ok, 1 some failed or did not run, 2 bad options or a
failed preflight (nothing ran), 130 interrupted."""
EXAMPLES = """\
examples:
  python -m sweep.run                      # the demo preset on the embedded ants-vs-bees photos
  python -m sweep.run --dry-run            # the grid, resources and expected time; nothing runs
  python -m sweep.run --preset paper --data DIR --ood DIR --storage s3://bucket/runs
  python -m sweep.run --preset paper --data DIR --triage   # linear probe per architecture, ranked
  python -m sweep.run --archs resnet18 mobilenet_v2 --seeds 0 1 2 --set epochs=10"""
KEEP_MODELS = ("none", "best", "all")
ORDERS = ("longest-first", "grid")
DEFAULT_CHECKPOINT_MINUTES = 5.0
STORAGE_ENV = "FEATURE_REUSE_STORAGE"
"""Default --storage (cluster.yaml sets it to an S3 prefix on every node)."""
INTERRUPTED = ("\ninterrupted: finished trials are saved; run the same command again to finish "
               "the rest (each unfinished trial continues from its last checkpoint)")
log = logging.getLogger("sweep.run")  # not __name__: "__main__" under python -m


# ------------------------------------------------------------------------------- the options
def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m sweep.run", description=DESCRIPTION, epilog=EXAMPLES,
                      settings=overrides.FIELD_TYPES, renames={"model": "--archs"},
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_options(p.add_argument_group("grid"))
    add_data_options(p.add_argument_group("data"))
    add_training_options(p.add_argument_group("training"))
    add_resource_options(p.add_argument_group("resources"))
    add_output_options(p.add_argument_group("output"))
    return p


def add_grid_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--preset", default="demo", help=f"one of: {', '.join(PRESETS)} (default demo)")
    g.add_argument("--archs", "--arch", nargs="+", metavar="ARCH",
                   help=f"architectures (default: the preset's): the study's {', '.join(ARCHS)}; "
                        "any torchvision classifier (convnext_tiny, efficientnet_b0, vit_b_16, ...); "
                        "any timm model as timm/NAME (timm/convnext_atto; needs feature-reuse[timm]). "
                        "Settings of the last two are derived from the library (--dry-run shows them)")
    g.add_argument("--regimes", "--regime", nargs="+", metavar="REGIME",
                   help="regimes (default: the preset's; the study's three, the demo adds "
                        f"linear_probe); from: {', '.join(REGIMES)}")
    g.add_argument("--triage", action="store_true",
                   help="run only the linear probe of every requested architecture (seconds to "
                        "minutes each), rank them on validation accuracy and print which to "
                        "fine-tune and the command that does (docs/linear_probe.md)")
    g.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="one number N: N seeds, 0..N-1 (--seeds 5); two or more: those seeds "
                        "(--seeds 0 1 2). Default: the preset's")
    g.add_argument("--seed", type=int, metavar="SEED",
                   help="one seed only, as the single-trial CLI's --seed (--seed 3: seed 3)")
    g.add_argument("--train-sizes", "--train-size", nargs="+", metavar="SIZE",
                   help="training images per class: 'all', a count (20) or a fraction (0.5)")


def add_data_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--data", help="pool folder (DATA/<class>/...) or pre-split folder "
                   "(DATA/{train,val,test}/<class>/...; train/ + val/ alone: each class's val/ "
                   "split half validation, half test by --split-seed), or a URI of one "
                   "(s3://bucket/pool); "
                   "default: the embedded demo set. Only the driver reads it: trials get the "
                   "images through Ray's object store")
    g.add_argument("--ood", help="OOD folder (or URI) with the same class subfolders")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the 60/20/20 split")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (listed in the manifest) instead of failing")
    g.add_argument("--allow-duplicates", action="store_true",
                   help="run although byte-identical images are in train and in val/test/OOD "
                        "(they are recorded in the manifest and the report); refused by default")


def add_training_options(g: argparse._ArgumentGroup) -> None:
    overrides.add_arguments(g)
    g.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_MINUTES, metavar="MINUTES",
                   help="write a trial's checkpoint at most every MINUTES minutes, and after its "
                        f"last epoch (default {DEFAULT_CHECKPOINT_MINUTES:g}; 0: after every epoch). A "
                        "retried or interrupted trial continues from its last checkpoint, with the "
                        "same numbers")
    g.add_argument("--max-failures", type=int, default=2,
                   help="retries per trial after an error (default 2); a retry continues from "
                        "its last checkpoint")


def add_resource_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--gpus-per-trial", default="auto",
                   help="'auto' (fraction per architecture from its peak memory; CPU when the "
                        "cluster has no GPU) or a fraction such as 0.25 (0: CPU only)")
    g.add_argument("--gpu-memory-gb", type=float,
                   help="GPU memory for 'auto' fractions when no GPU node is up yet "
                        "(autoscaling clusters); default: measured")
    add_flags(g)  # --memory-check/--no-memory-check (and the deprecated --probe/--no-probe)
    g.add_argument("--cpus-per-trial", default="1",
                   help="CPUs per trial, also its torch threads (default 1)")
    g.add_argument("--address", help="Ray cluster to join (e.g. 'auto' on a cluster's head "
                   "node); default: $RAY_ADDRESS, else a local Ray started for this sweep")
    g.add_argument("--order", default="longest-first", choices=ORDERS,
                   help="which trials Ray starts first: the longest expected (architecture x "
                        "regime x epochs x images; the default, so that the "
                        "sweep does not end on one long trial) or the grid's own order")


def add_output_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or "runs",
                   help="local folder or URI (s3://bucket/prefix) holding experiments "
                        f"(default ${STORAGE_ENV} if set, else ./runs). On a Ray cluster a "
                        "local folder is the driver's, served to the other nodes through Ray; "
                        "file:///mnt/nfs/... names a folder every node mounts")
    g.add_argument("--name", help="experiment name under --storage (default: the preset name); "
                   "'auto': derived from the preset and the --set/--config overrides "
                   "(demo-epochs10-bnfrozen). One experiment holds one configuration: a sweep "
                   "with other settings into an existing one is refused (the grid's axes may grow)")
    g.add_argument("--keep-models", default="best", choices=KEEP_MODELS,
                   help="save trained weights: none, the best seed of each arch x regime x "
                        "train size (default), or all")
    g.add_argument("--progress-interval", type=float, default=30.0,
                   help="seconds between progress prints when output is not a terminal")
    g.add_argument("--dry-run", action="store_true",
                   help="print the trial grid, resources and expected wall time; run nothing")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="end with where the wall time went (Ray's start-up and per-trial "
                        "latency, idle slots) besides the results and failures")


# ------------------------------------------------------------------------------- the steps
def run_grid(plan: SweepPlan, ready: Ready, verbose: bool = False) -> int:
    """Step 3: the trials still to run on Ray Tune (sweep/tuner.py), then the summary
    (sweep/finish.py; where the wall time went only with `verbose`); the exit status."""
    from sweep.finish import finish
    from sweep.progress import SweepState
    from sweep.tuner import start_tuners
    from sweep.wall_time import timings

    exp = plan.experiment
    state = SweepState.for_run(ready.todo, [ready.finished[p.trial_id] for p in ready.done],
                               skipped=len(ready.done))
    tidy_before_run(exp, [p.trial_id for p in ready.done])
    failures = RunFailures(exp, plan.storage)
    t_run, missing = time.time(), []
    if ready.todo:
        with contextlib.ExitStack() as stack:
            for tuner in start_tuners(plan, ready, state, failures, stack):
                try:
                    failures.collect(tuner.fit())
                except Exception as exc:  # Ray or the storage failed under the Tuner: summarize
                    failures.stopped = exc
                    break
            failures.after_tuner(ready.todo, ready.manifest)
            missing = [] if failures.stopped else cluster_nodes.missing_lines()  # Ray still up
    timing = timings(state, t_run, time.time(), ready.todo, verbose) if ready.todo else []
    return finish(plan, ready, failures, missing + timing)


def main(argv: list[str] | None = None) -> int:
    """Plan (sweep/plan.py), preflight (sweep/preflight.py), run (`run_grid`, or --dry-run's
    listing); the exit status."""
    args = build_parser().parse_args(argv)
    if args.seed is not None and args.seeds:
        build_parser().exit(2, "error: --seed and --seeds both given; use one (--seeds 0 1 2 "
                               "runs several seeds)\n")
    args.seeds = (args.seed,) if args.seed is not None else seeds_option(args.seeds)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0: no Ray tables, only our view
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops at once; rerun resumes
    # One experiment-state snapshot per checkpoint is what we want (rerun safety), not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with console_output():
        try:
            with sigterm_as_interrupt():
                plan = make_plan(args)
                ready = run_preflight(plan.spec, plan.experiment, plan.storage, plan.data,
                                      write=not plan.dry_run)
                try:
                    report(plan, ready)
                    return (show_dry_run(plan, ready) if plan.dry_run
                            else run_grid(plan, ready, args.verbose))
                finally:
                    ready.release()
        except UserError as exc:
            log.error("%s", exc)
            return 2
        except KeyboardInterrupt:
            log.error(INTERRUPTED, extra={"prefix": ""})
            return 130


if __name__ == "__main__":
    sys.exit(main())
