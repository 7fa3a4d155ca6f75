"""Step 3 of a sweep, its set-up: Ray up, each trial sized, the images shipped, the Tuners built.

`start_tuners` joins or starts Ray (its log to the experiment's driver.log), checks the GPU
nodes, sizes each architecture's trials (measuring GPU memory when asked) and ships the images
into Ray's object store; then it hands out one Tuner per `TRIALS_PER_TUNER` trials still to
run, in the order they should start (sweep/schedule.py), each trial run by
`sweep.trainable.run_tune_trial`. `sweep.run.run_grid` calls their `fit()` one after another.

Why several Tuners: Tune keeps every trial of a Tuner in its experiment state (21 kB each) and
writes all of it again at each trial's checkpoint (CheckpointConfig(num_to_keep=1) asks for
that, so a killed driver loses no checkpoint), so one Tuner costs O(n) per trial and O(n^2) in
all: 0.6 s of driver time per trial at 100 trials, 0.8 s at 400, about a minute at 100,000.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from ray.tune.search import Searcher

from sweep import cluster_nodes
from sweep.checkpoints import ResumePointers
from sweep.datastore import ship_images
from sweep.estimate import estimate_line
from sweep.failures import RunFailures
from sweep.logs import ray_driver_log
from sweep.memory_check import run_memory_check
from sweep.plan import SweepPlan
from sweep.preflight import Ready, require_gpu_nodes
from sweep.progress import SweepProgress, SweepState
from sweep.ray_session import joining, joins_cluster, ray_session
from sweep.resources import ClusterInfo, ResourcePlan, plan_resources, ray_cluster_info
from sweep.schedule import run_order
from trainables.archs import arch_slug
from trainables.errors import UserError

TRIALS_PER_TUNER = 500
"""Trials per Tuner: Tune's per-trial cost grows with this (see above), each Tuner costs a few
seconds to start and idles slots while its last trials run."""
PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"
log = logging.getLogger(__name__)


def start_tuners(plan: SweepPlan, ready: Ready, state: SweepState, failures: RunFailures,
                 stack: contextlib.ExitStack) -> Iterator[Any]:
    """Ray up for as long as `stack` is open; then the Tuners, built as they are asked for."""
    from ray import tune

    from sweep.served_storage import storage_for_trials  # imports ray
    from sweep.trainable import forwarded_env, run_tune_trial

    exp, address = plan.experiment, plan.resources.address
    stack.enter_context(ray_driver_log(exp))
    with joining(address):
        started_here = stack.enter_context(ray_session(address, exp))
    cluster = ray_cluster_info()
    for line in cluster_nodes.missing_lines():  # an on-premise cluster's absent machines
        log.info("%s", line)
    require_gpu_nodes(cluster)  # each GPU node: CUDA usable, same code as here
    local_ray = started_here and not joins_cluster(address)
    resources = size_trials(plan, cluster, local_ray)
    log.info("%s", estimate_line(ready.todo, ready.manifest.counts(), resources, cluster))
    images = ship_images(ready.manifest.entries, ready.roots)
    storage_fs = None if local_ray else storage_for_trials(exp)
    stack.enter_context(pending_trials(cluster))
    trainable = tune.with_resources(tune.with_parameters(
        run_tune_trial, manifest_json=ready.manifest.to_json(), images=images,
        experiment_root=exp.root, storage_fs=storage_fs, keep_model=plan.keep_models != "none",
        env=forwarded_env(), checkpoint_every_s=plan.checkpoint_every_s), resources)
    callbacks = [SweepProgress(state, exp.results, interval=plan.progress_interval),
                 ResumePointers(exp), failures.callback()]
    points = [{"trial_id": p.trial_id, "trial": p.config.to_dict()}
              for p in run_order(ready.todo, ready.manifest.counts(), plan.order)]
    state.start = time.time()
    return (build_tuner(plan, trainable, points[i:i + TRIALS_PER_TUNER], storage_fs, callbacks)
            for i in range(0, len(points), TRIALS_PER_TUNER))


@contextlib.contextmanager
def pending_trials(cluster: ClusterInfo) -> Iterator[None]:
    """Let Tune queue as many trials as it would for a grid_search (max(200, 1.1 x CPUs)): for
    any other search algorithm it queues one, and each trial then waits for the one before it
    to start. A value the user set stays."""
    if PENDING_ENV in os.environ:
        yield
        return
    os.environ[PENDING_ENV] = str(max(200, int(cluster.cpus * 1.1)))
    try:
        yield
    finally:
        os.environ.pop(PENDING_ENV, None)


def size_trials(plan: SweepPlan, cluster: ClusterInfo, local_ray: bool) -> ResourcePlan:
    """Each architecture's CPUs and GPU share on this cluster, logged; refused when a trial
    could never start on a Ray started here."""
    r = plan.resources
    measured = run_memory_check(plan.spec, cluster, r.gpus, r.measure_memory)
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


def build_tuner(plan: SweepPlan, trainable: Any, points: list[dict[str, Any]], storage_fs: Any,
                callbacks: list[Any]) -> Any:
    from ray import tune

    exp = plan.experiment
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=GridPoints(points), num_samples=len(points),
                                    reuse_actors=True, trial_dirname_creator=trial_dirname,
                                    trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=exp.ray_name, storage_path=exp.root, storage_filesystem=storage_fs, verbose=0,
            # each trial's stdout/stderr, uploaded into its folder under ray/
            log_to_file=True, sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=callbacks, failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


class GridPoints(Searcher):
    """The sweep's points, handed to Tune one per trial in the order given; FIFO scheduling
    starts pending trials in that order. Each trial's config is {"point": one of them}.

    This is what `tune.grid_search(points)` did, without its cost: Tune's variant generator
    deep-copies the whole search space, the point list included, for every variant
    (ray/tune/search/variant_generator.py, `_grid_search_generator`), so n points cost O(n^2):
    0.16 s per trial at 1,000 points, 0.8 s at 4,000, days at 100,000. Here a trial costs the
    same whatever n. There is no state to save: a rerun builds a new Tuner over the trials the
    results table does not have, Tune's own restore is not used."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        super().__init__()
        self.points = points
        self.handed = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.handed >= len(self.points):
            return Searcher.FINISHED
        self.handed += 1
        return {"point": self.points[self.handed - 1]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        pass  # nothing to restore from (see the class docstring)

    def restore(self, checkpoint_path: str) -> None:
        pass
