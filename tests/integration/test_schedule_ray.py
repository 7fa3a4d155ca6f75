"""Against a real local Ray: Tune starts the grid in the order the sweep gives it, the progress
callback's spans match when trials really computed, and the memory check reaches a GPU node
(a logical GPU here: it measures on the CPU, and the sweep keeps the table's numbers)."""

from __future__ import annotations

import time

import pytest

from sweep.progress import SweepProgress, SweepState, TrialView
from sweep.wall_time import wall_time

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_one_slot():
    import ray

    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


def short_trial(config):
    from ray import tune

    began = time.time()
    time.sleep(0.3)
    tune.report({"epoch": 1, "began": began})
    time.sleep(0.2)
    tune.report({"epoch": 2, "began": began, "ended": time.time()})


def test_tune_starts_points_in_list_order_and_spans_match_the_trials(ray_one_slot, tmp_path):
    import io

    from ray import tune

    from sweep.resources import ClusterInfo
    from sweep.tuner import GridPoints, pending_trials

    ids = [f"t{i}" for i in (5, 2, 9, 0, 7, 3)]  # not sorted: the list order is what counts
    state = SweepState()
    for tid in ids:
        state.trials[tid] = TrialView("resnet18", "finetune", 0, "all", 2)
    progress = SweepProgress(state, out=io.StringIO(), live=False)
    state.start = time.time()
    tuner = tune.Tuner(  # as sweep.tuner builds it: the points one per trial, queued together
        tune.with_resources(short_trial, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=GridPoints([{"trial_id": t} for t in ids]),
                                    num_samples=len(ids), reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="order", verbose=0,
                                  callbacks=[progress]))
    with pending_trials(ClusterInfo(cpus=1, gpus=0)):
        grid = tuner.fit()
    ended = time.time()
    began = {r.config["point"]["trial_id"]: r.metrics["began"] for r in grid}
    assert sorted(ids, key=began.get) == ids
    assert [s.trial_id for s in sorted(state.spans, key=lambda s: s.start)] == ids
    for span in state.spans:
        # the driver-side estimate of when the trial began computing: within Ray's reporting delay
        assert abs(span.start - began[span.trial_id]) < 0.5
        assert span.seconds >= 0.5
    w = wall_time(state.spans, 1, state.start, state.start, ended)
    assert len(w.cold) == 1 and len(w.handovers) == len(ids) - 1
    assert all(0 <= h < 5 for h in w.handovers)
    assert w.ratio >= 1.0


def test_memory_check_runs_on_the_gpu_node(ray_one_slot):
    from sweep.memory_check import check_gpu_node, gpu_peaks

    checks, node = check_gpu_node(["squeezenet1_0"], "smoke", timeout_s=300)
    import ray

    assert node == ray.get_runtime_context().get_node_id()
    assert [c.arch for c in checks] == ["squeezenet1_0"]
    assert checks[0].device == "cpu" and checks[0].peak_gb > 0  # no CUDA behind the logical GPU
    assert gpu_peaks(checks) == {}
