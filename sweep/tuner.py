"""Step 3 of a sweep, its set-up: Ray up, each trial sized, the images shipped, the Tuner built.

`start_tuner` joins or starts Ray (its log to the experiment's driver.log), checks the GPU nodes,
sizes each architecture's trials (measuring GPU memory when asked), ships the images into Ray's
object store and returns the Tuner over the trials still to run: one `grid_search` over their
configs, in the order they should start (sweep/schedule.py), each run by
`sweep.trainable.run_tune_trial`. `sweep.run.run_grid` calls its `fit()`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from sweep.checkpoints import ResumePointers
from sweep.datastore import ShippedImages, ship_images
from sweep.failures import RunFailures
from sweep.logs import ray_driver_log
from sweep.plan import SweepPlan
from sweep.preflight import Ready, require_gpu_nodes
from sweep.probe import probe_memory
from sweep.progress import SweepProgress, SweepState
from sweep.ray_session import joining, joins_cluster, ray_session
from sweep.resources import ClusterInfo, ResourcePlan, plan_resources, ray_cluster_info
from sweep.schedule import run_order
from trainables.archs import arch_slug
from trainables.errors import UserError

log = logging.getLogger(__name__)


def start_tuner(plan: SweepPlan, ready: Ready, state: SweepState, failures: RunFailures,
                stack: contextlib.ExitStack) -> Any:
    """The Tuner, with Ray up for as long as `stack` is open."""
    exp, address = plan.experiment, plan.resources.address
    stack.enter_context(ray_driver_log(exp))
    with joining(address):
        started_here = stack.enter_context(ray_session(address, exp))
    cluster = ray_cluster_info()
    require_gpu_nodes(cluster)  # each GPU node: CUDA usable, same code as here
    local_ray = started_here and not joins_cluster(address)
    resources = size_trials(plan, cluster, local_ray)
    from sweep.served_storage import storage_for_trials  # imports ray

    images = ship_images(ready.manifest.entries, ready.roots)
    storage_fs = None if local_ray else storage_for_trials(exp)
    progress = SweepProgress(state, exp.results, interval=plan.progress_interval)
    state.start = time.time()
    return build_tuner(plan, ready, resources, images, storage_fs,
                       callbacks=[progress, ResumePointers(exp), failures.callback()])


def size_trials(plan: SweepPlan, cluster: ClusterInfo, local_ray: bool) -> ResourcePlan:
    """Each architecture's CPUs and GPU share on this cluster, logged; refused when a trial
    could never start on a Ray started here."""
    r = plan.resources
    measured = probe_memory(plan.spec, cluster, r.gpus, r.measure_memory, log.info)
    resources = plan_resources(plan.spec.resolved_archs, cluster, r.gpus, r.cpus, r.gpu_memory_gb,
                               measured)
    if local_ray:  # an autoscaling cluster can grow to fit
        check_fits(resources, cluster)
    log.info("cluster: %s; %s", cluster.describe(),
             "; ".join(f"{a} {res.describe()}" for a, res in resources.per_arch.items()))
    return resources


def check_fits(resources: ResourcePlan, cluster: ClusterInfo) -> None:
    for arch, res in resources.per_arch.items():
        if res.gpu and not cluster.gpus:
            raise UserError(f"--gpus-per-trial {res.gpu:g}: this machine has no GPU; use auto or 0 "
                            "(or join a cluster with --address)")
        if res.cpu > cluster.cpus:
            raise UserError(f"--cpus-per-trial {res.cpu:g}: {arch} trials would wait forever on "
                            f"this machine's {cluster.cpus:g} CPUs; use at most {cluster.cpus:g}")


def trial_dirname(trial: Any) -> str:
    """Ray's trial folder and name: readable, with our trial id and Ray's own (unique per run)."""
    point = trial.config["point"]
    c = point["trial"]
    return (f"{arch_slug(c['arch'])}-{c['regime']}-s{c['seed']}-n{c['train_size']}-"
            f"{point['trial_id']}-{trial.trial_id}")


def build_tuner(plan: SweepPlan, ready: Ready, resources: ResourcePlan, images: ShippedImages,
                storage_fs: Any, callbacks: list[Any]) -> Any:
    from ray import tune

    from sweep.trainable import forwarded_env, run_tune_trial

    exp = ready.experiment
    trainable = tune.with_parameters(
        run_tune_trial, manifest_json=ready.manifest.to_json(), images=images,
        experiment_root=exp.root, storage_fs=storage_fs, keep_model=plan.keep_models != "none",
        env=forwarded_env(), checkpoint_every_s=plan.checkpoint_every_s)
    # grid_search keeps this list's order, and FIFO scheduling starts pending trials in it
    points = [{"trial_id": p.trial_id, "trial": p.config.to_dict()}
              for p in run_order(ready.todo, ready.manifest.counts(), plan.order)]
    return tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"point": tune.grid_search(points)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True, trial_dirname_creator=trial_dirname,
                                    trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=exp.ray_name, storage_path=exp.root, storage_filesystem=storage_fs, verbose=0,
            # each trial's stdout/stderr, uploaded into its folder under ray/
            log_to_file=True, sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
