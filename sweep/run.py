"""The sweep: architecture x regime x seed x train size on Ray Tune, results in Parquet.

    python -m sweep.run                      # demo: mobilenet_v2 x 3 regimes x 3 seeds, embedded data
    python -m sweep.run --preset paper --data DIR --ood DIR --storage s3://bucket/runs
    python -m sweep.run --dry-run            # the grid and resources, nothing runs
    python -m sweep.run --preset paper --triage   # linear probe per architecture, ranked first

Layout under <storage>/<name>/: manifest.json (the split, built once here), results/ (Parquet:
epochs, trials, predictions, compacted into a few files per table at the end; models/), ray/
(Ray Tune's trial folders and logs). Running the same command again skips finished trials and
finishes the rest; an interrupted trial continues from its last checkpoint (at most
--checkpoint-every minutes old). Exit status: 0 all trials ok, 1 some failed or did not run,
2 bad options or a failed preflight (nothing ran), 130 interrupted.

Long because it is the whole command: every option with its help, and the flow from preflight
through Ray to the summary; the parts live in sweep/ (grid, preflight, guard, schedule, probe,
progress, outcome, compact).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time

from sweep import cluster_nodes
from sweep.checkpoints import forget_finished
from sweep.datastore import ship_images
from sweep.grid import GridSpec
from sweep.guard import (
    RunFaults,
    check_options,
    free_orphan_checkpoints,
    joining,
    summarize_checked,
)
from sweep.layout import Experiment, remove_stale_temporaries
from sweep.logs import ray_driver_log
from sweep.preflight import Ready, require_gpu_nodes, run_preflight
from sweep.probe import probe_memory
from sweep.ray_session import joins_cluster, ray_session, sigterm_as_interrupt
from sweep.resources import (
    ClusterInfo,
    ResourcePlan,
    local_cluster_info,
    parse_cpus_per_trial,
    parse_gpus_per_trial,
    plan_resources,
    ray_cluster_info,
)
from sweep.schedule import grid_lines, run_order
from sweep.settings import print_settings
from trainables import overrides
from trainables.config import REGIMES
from trainables.errors import UserError
from trainables.presets import PRESETS, PresetMessage, deviations, get_preset
from trainables.registry import ARCHS, arch_slug

KEEP_MODELS = ("none", "best", "all")
ORDERS = ("longest-first", "grid")
DEFAULT_CHECKPOINT_MINUTES = 5.0
STORAGE_ENV = "FEATURE_REUSE_STORAGE"
"""Default --storage (cluster.yaml sets it to an S3 prefix on every node)."""
log = logging.getLogger("sweep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweep.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo",
                   help=f"one of: {', '.join(PRESETS)} (default demo)")
    overrides.add_arguments(p)
    p.add_argument("--archs", nargs="+", metavar="ARCH",
                   help=f"architectures (default: the preset's): the study's {', '.join(ARCHS)}; "
                        "any torchvision classifier (convnext_tiny, efficientnet_b0, vit_b_16, ...); "
                        "any timm model as timm/NAME (timm/convnext_atto; needs feature-reuse[timm]). "
                        "Settings of the last two are derived from the library (--dry-run shows them)")
    p.add_argument("--regimes", nargs="+", metavar="REGIME",
                   help="regimes (default: the preset's; the study's three, the demo adds "
                        f"linear_probe); from: {', '.join(REGIMES)}")
    p.add_argument("--triage", action="store_true",
                   help="run only the linear probe of every requested architecture (seconds to "
                        "minutes each), rank them on validation accuracy and print which to "
                        "fine-tune and the command that does (docs/linear_probe.md)")
    p.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default: the preset's)")
    p.add_argument("--train-sizes", nargs="+", metavar="SIZE",
                   help="training images per class: 'all', a count (20) or a fraction (0.5)")
    p.add_argument("--data", help="pool folder (DATA/<class>/...) or pre-split folder "
                   "(DATA/{train,val,test}/<class>/...), or a URI of one (s3://bucket/pool); "
                   "default: the embedded demo set. Only the driver reads it: trials get the "
                   "images through Ray's object store")
    p.add_argument("--ood", help="OOD folder (or URI) with the same class subfolders")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 60/20/20 split")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (listed in the manifest) instead of failing")
    p.add_argument("--allow-duplicates", action="store_true",
                   help="run although byte-identical images are in train and in val/test/OOD "
                        "(they are recorded in the manifest and the report); refused by default")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or "runs",
                   help="local folder or URI (s3://bucket/prefix) holding experiments "
                        f"(default ${STORAGE_ENV} if set, else ./runs). On a Ray cluster a "
                        "local folder is the driver's, served to the other nodes through Ray; "
                        "file:///mnt/nfs/... names a folder every node mounts")
    p.add_argument("--name", help="experiment name under --storage (default: the preset name)")
    p.add_argument("--gpus-per-trial", default="auto",
                   help="'auto' (fraction per architecture from its peak memory; CPU when the "
                        "cluster has no GPU) or a fraction such as 0.25 (0: CPU only)")
    p.add_argument("--gpu-memory-gb", type=float,
                   help="GPU memory for 'auto' fractions when no GPU node is up yet "
                        "(autoscaling clusters); default: measured")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                   help="with --gpus-per-trial auto: measure each architecture's peak GPU memory "
                        "with a short probe on the first GPU node and size fractions from it "
                        "(default on; --no-probe uses the registry's traced estimates)")
    p.add_argument("--cpus-per-trial", default="1",
                   help="CPUs per trial, also its torch threads (default 1)")
    p.add_argument("--keep-models", default="best", choices=KEEP_MODELS,
                   help="save trained weights: none, the best seed of each arch x regime x "
                        "train size (default), or all")
    p.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_MINUTES, metavar="MINUTES",
                   help="write a trial's checkpoint at most every MINUTES minutes, and after its "
                        f"last epoch (default {DEFAULT_CHECKPOINT_MINUTES:g}; 0: after every epoch). A "
                        "retried or interrupted trial continues from its last checkpoint, with the "
                        "same numbers")
    p.add_argument("--max-failures", type=int, default=2,
                   help="retries per trial after an error (default 2); a retry continues from "
                        "its last checkpoint")
    p.add_argument("--address", help="Ray cluster to join (e.g. 'auto' on a cluster's head "
                   "node); default: $RAY_ADDRESS, else a local Ray started for this sweep")
    p.add_argument("--order", default="longest-first", choices=ORDERS,
                   help="which trials Ray starts first: the longest expected (architecture x "
                        "regime x epochs x images, sweep/schedule.py; the default, so that the "
                        "sweep does not end on one long trial) or the grid's own order")
    p.add_argument("--progress-interval", type=float, default=30.0,
                   help="seconds between progress prints when output is not a terminal")
    p.add_argument("--dry-run", action="store_true",
                   help="print the trial grid and resources, run nothing")
    return p


# ---------------------------------------------------------------------------------- printing
def say(text: str = "") -> None:
    print(text, flush=True)


def print_grid(ready: Ready, plan: ResourcePlan, order: str) -> None:
    for line in grid_lines(ready.done, ready.todo, ready.manifest.counts(), plan, order):
        say(line)


# ---------------------------------------------------------------------------------- ray
def check_plan(plan: ResourcePlan, cluster: ClusterInfo, started_locally: bool) -> None:
    if not started_locally:
        return  # an autoscaling cluster can grow to fit
    for arch, res in plan.per_arch.items():
        if res.gpu and not cluster.gpus:
            raise UserError(f"--gpus-per-trial {res.gpu:g}: this machine has no GPU; use auto or 0 "
                            "(or join a cluster with --address)")
        if res.cpu > cluster.cpus:
            raise UserError(f"--cpus-per-trial {res.cpu:g}: {arch} trials would wait forever on "
                            f"this machine's {cluster.cpus:g} CPUs; use at most {cluster.cpus:g}")


def trial_dirname(trial) -> str:
    """Ray's trial folder and name: readable, with our trial id and Ray's own (unique per run)."""
    point = trial.config["point"]
    c = point["trial"]
    return (f"{arch_slug(c['arch'])}-{c['regime']}-s{c['seed']}-n{c['train_size']}-"
            f"{point['trial_id']}-{trial.trial_id}")


def run_tuner(ready: Ready, plan: ResourcePlan, args: argparse.Namespace, progress,
              keep_model: bool, faults: RunFaults, images, storage_fs):
    from ray import tune

    from sweep.checkpoints import ResumePointers
    from sweep.trainable import forwarded_env, run_tune_trial

    exp = ready.experiment
    trainable = tune.with_parameters(
        run_tune_trial, manifest_json=ready.manifest.to_json(), images=images,
        experiment_root=exp.root, storage_fs=storage_fs, keep_model=keep_model,
        env=forwarded_env(), checkpoint_every_s=60.0 * args.checkpoint_every)
    # grid_search keeps this list's order, and FIFO scheduling starts pending trials in it
    points = [{"trial_id": p.trial_id, "trial": p.config.to_dict()}
              for p in run_order(ready.todo, ready.manifest.counts(), args.order)]
    tuner = tune.Tuner(
        tune.with_resources(trainable, plan),
        param_space={"point": tune.grid_search(points)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True, trial_dirname_creator=trial_dirname,
                                    trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=exp.ray_name, storage_path=exp.root, storage_filesystem=storage_fs, verbose=0,
            # each trial's stdout/stderr, uploaded into its folder under ray/
            log_to_file=True, sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=[progress, ResumePointers(exp), faults.callback()],
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    return tuner.fit()


# ---------------------------------------------------------------------------------- main
def sweep(args: argparse.Namespace) -> int:
    from sweep import triage

    t_start = time.time()
    preset = get_preset(args.preset)
    spec = GridSpec(preset=preset, archs=tuple(args.archs) if args.archs else None,
                    regimes=tuple(args.regimes) if args.regimes else None, seeds=args.seeds,
                    train_sizes=tuple(args.train_sizes) if args.train_sizes else None,
                    overrides=overrides.collect(args.config_file, args.set_values))
    if args.triage:
        spec = triage.triage_spec(spec)
    gpus = parse_gpus_per_trial(args.gpus_per_trial)
    cpus = parse_cpus_per_trial(args.cpus_per_trial)
    check_options(args, spec)
    experiment = Experiment.at(args.storage, args.name or preset.name)
    ready = run_preflight(spec, experiment, args.storage, args.data, args.ood, args.split_seed,
                          args.skip_bad_images, write=not args.dry_run,
                          allow_duplicates=args.allow_duplicates)
    try:
        return run_ready(args, spec, preset, experiment, ready, gpus, cpus, t_start)
    finally:
        if ready.lock is not None:
            ready.lock.release()


def run_ready(args: argparse.Namespace, spec: GridSpec, preset, experiment: Experiment,
              ready: Ready, gpus: float | None, cpus: float, t_start: float) -> int:
    """Everything after preflight: the dry-run listing, or the Tuner and the summary."""
    from sweep import outcome, triage
    from sweep.progress import SweepProgress, SweepState, TrialView

    for note in ready.notes:
        say(f"note: {note}")
    for warning in ready.manifest.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    counts = ready.manifest.counts()
    say(f"preflight ok in {time.time() - t_start:.1f} s: split {ready.manifest.hash} "
        + ", ".join(f"{s} {sum(counts.get(s, {}).values())}" for s in ("train", "val", "test", "ood"))
        + f" images; OOD: {ready.manifest.ood_kind}")
    configs = [p.config for p in ready.grid]
    data = "the embedded ants-vs-bees photos" if args.data is None else f"--data {args.data}"
    message = PresetMessage(preset, spec.overrides,
                            deviations(configs, data=data, ood_kind=ready.manifest.ood_kind,
                                       seeds=spec.resolved_seeds,
                                       train_sizes=spec.resolved_train_sizes))
    for line in message.lines():
        say(line)
    say(f"grid: {len(ready.grid)} trials ({len(ready.done)} finished earlier, "
        f"{len(ready.todo)} to run) -> {experiment.root}")

    if args.dry_run:
        cluster = local_cluster_info()
        if joins_cluster(args):
            with joining(args.address), ray_session(args.address):
                cluster = ray_cluster_info()
                for line in cluster_nodes.missing_lines():
                    say(line)
        require_gpu_nodes(cluster, say)
        say(f"cluster: {cluster.describe()}")
        for warning in ready.warnings:
            say(f"warning (a real run stops here): {warning}")
        print_settings(ready)
        print_grid(ready, plan_resources(spec.resolved_archs, cluster, gpus, cpus, args.gpu_memory_gb),
                   args.order)
        return 0

    state = SweepState(skipped=len(ready.done))
    for row in outcome.summarize(experiment.results, ready.done)[1].values():
        key = (row["arch"], row["regime"])
        state.previous_best[key] = max(state.previous_best.get(key, -1.0), row["best_val_acc"] or 0)
    for p in ready.todo:
        c = p.config
        state.trials[p.trial_id] = TrialView(c.arch, c.regime, c.seed, c.train_size, c.epochs)

    removed = remove_stale_temporaries(experiment.results)
    if removed:
        say(f"removed {removed} partial file(s) left by an interrupted run")
    forget_finished(experiment, [p.trial_id for p in ready.done])
    with contextlib.suppress(Exception):  # best effort: only disk space is at stake
        free_orphan_checkpoints(experiment)
    t_run = time.time()
    faults, recorded, missing = RunFaults(experiment, args.storage), 0, []
    if ready.todo:
        with contextlib.ExitStack() as stack:
            stack.enter_context(ray_driver_log(experiment))
            with joining(args.address):
                started_here = stack.enter_context(ray_session(args.address, experiment))
            cluster = ray_cluster_info()
            for line in cluster_nodes.missing_lines():  # an on-premise cluster's absent machines
                say(line)
            require_gpu_nodes(cluster, say)  # each GPU node: CUDA usable, same code as here
            measured = probe_memory(spec, cluster, gpus, args.probe, say)
            plan = plan_resources(spec.resolved_archs, cluster, gpus, cpus, args.gpu_memory_gb, measured)
            local_ray = started_here and not joins_cluster(args)
            check_plan(plan, cluster, started_locally=local_ray)
            say(f"cluster: {cluster.describe()}; " + "; ".join(
                f"{a} {r.describe()}" for a, r in plan.per_arch.items()))
            from sweep.served_storage import storage_for_trials  # imports ray

            images = ship_images(ready.manifest.entries, ready.roots, say)
            storage_fs = None if local_ray else storage_for_trials(experiment, say)
            progress = SweepProgress(state, experiment.results, interval=args.progress_interval)
            state.start = time.time()
            try:
                faults.collect(run_tuner(ready, plan, args, progress,
                                         keep_model=args.keep_models != "none", faults=faults,
                                         images=images, storage_fs=storage_fs))
            except Exception as exc:  # Ray or the storage failed under the Tuner: summarize
                faults.stopped = exc
            recorded = faults.after_tuner(ready.todo, ready.manifest)
            missing = [] if faults.stopped else cluster_nodes.missing_lines()
    t_end = time.time()

    summary, rows = summarize_checked(experiment.results, ready.grid)
    faults.merge(summary)
    if ready.todo:  # a trial whose row is written but whose Ray callback never ran (the Tuner
        ran_now = {p.trial_id for p in ready.todo}  # stopped on an error) keeps no checkpoint
        forget_finished(experiment, [t for t in summary.ok if t in ran_now])
    say("")
    for line in outcome.describe(summary, ready.grid):
        say(line)
    if recorded:
        say(f"recorded {recorded} failed trial row(s) from Ray's errors")
    for line in faults.lines(summary.complete):
        say(line)
    for line in missing:
        say(line)
    if ready.todo:
        for line in outcome.timings(state, t_run, t_end, ready.todo):
            say(line)
    if args.keep_models == "best":
        try:
            outcome.prune_models(experiment.results, ready.grid, rows)
        except OSError as exc:
            say(f"could not remove the models of non-best seeds ({exc}); the next run does")
    outcome.compact(experiment.results, say)
    if args.triage:
        for line in triage.summary(experiment.results, ready.grid, args.argv):
            say(line)
    say(f"results: {experiment.results}")
    say(f"report:  {outcome.report_command(experiment.results)}")
    if not summary.complete:
        say("rerun the same command to retry what failed or did not run; finished trials are "
            "skipped")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0: no Ray tables, only our view
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops at once; rerun resumes
    # One experiment-state snapshot per checkpoint is what we want (rerun safety), not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        with sigterm_as_interrupt():
            return sweep(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command again to finish "
              "the rest (each unfinished trial continues from its last checkpoint)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
