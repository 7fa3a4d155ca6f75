"""GPU fractions per architecture, from the registry's peak memory; spreading fractional trials
over the GPUs of a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.gpu_spread import GpuLedger, choose_gpu
from sweep.resources import (
    CUDA_CONTEXT_GB,
    HEADROOM,
    MAX_TRIALS_PER_GPU,
    ClusterInfo,
    fraction_for,
    parse_cpus_per_trial,
    parse_gpus_per_trial,
    plan_resources,
    trials_per_gpu,
)
from trainables.archs import ARCHS, STUDY_ARCHS
from trainables.errors import UserError

GPU_CLUSTER = ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=80.0)
CPU_CLUSTER = ClusterInfo(cpus=2, gpus=0)


@pytest.mark.parametrize("n", range(1, MAX_TRIALS_PER_GPU + 1))
def test_n_fractions_always_fit_one_gpu(n):
    f = fraction_for(n)
    assert n * f <= 1.0
    assert (n + 1) * f > 1.0, "the fraction must not let an extra trial in"


def test_trials_per_gpu_counts_copies_of_peak_memory_with_headroom():
    # 8 GB card, 1 GB model: each trial needs 1.25 + 0.5 = 1.75 GB -> 4 fit
    assert trials_per_gpu(1.0, 8.0) == int(8.0 // (1.0 * HEADROOM + CUDA_CONTEXT_GB)) == 4
    assert trials_per_gpu(4.0, 80.0) == MAX_TRIALS_PER_GPU  # capped
    assert trials_per_gpu(30.0, 16.0) == 1  # never less than one whole GPU


def test_auto_plan_gives_bigger_models_bigger_fractions():
    # a 12 GB card: on 24 GB every architecture reaches the cap of 8 trials per GPU
    plan = plan_resources(STUDY_ARCHS, ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=12.0), None)
    for name in STUDY_ARCHS:
        res = plan.for_arch(name)
        assert res.cpu == 1.0
        n = trials_per_gpu(ARCHS[name].peak_memory_gb, 12.0)
        assert res.gpu == fraction_for(n)
        # the packed trials' peak memory fits the card
        assert n * (ARCHS[name].peak_memory_gb * HEADROOM + CUDA_CONTEXT_GB) <= 12.0
    assert plan.for_arch("densenet161").gpu > plan.for_arch("resnet18").gpu


def test_cpu_only_cluster_gets_cpu_trials():
    plan = plan_resources(["mobilenet_v2", "resnet18"], CPU_CLUSTER, None, cpus_per_trial=2)
    assert {a: r.bundle() for a, r in plan.per_arch.items()} == {
        "mobilenet_v2": {"CPU": 2}, "resnet18": {"CPU": 2}}
    assert "CPU only" in plan.mode


def test_gpu_memory_option_sizes_fractions_before_any_gpu_node_is_up():
    four = 4 * (ARCHS["mobilenet_v2"].peak_memory_gb * HEADROOM + CUDA_CONTEXT_GB) + 0.1
    plan = plan_resources(["mobilenet_v2"], CPU_CLUSTER, None, gpu_memory_gb=four)
    assert plan.for_arch("mobilenet_v2").gpu == 0.25


def test_unknown_gpu_memory_is_assumed_and_said():
    plan = plan_resources(["mobilenet_v2"], ClusterInfo(cpus=4, gpus=1), None)
    assert plan.for_arch("mobilenet_v2").gpu > 0
    assert any("--gpu-memory-gb" in n for n in plan.notes)


def test_explicit_fraction_applies_to_every_arch():
    plan = plan_resources(["vgg11_bn", "resnet18"], GPU_CLUSTER, 0.5)
    assert {r.gpu for r in plan.per_arch.values()} == {0.5}
    assert plan_resources(["resnet18"], GPU_CLUSTER, 0.0).for_arch("resnet18").bundle() == {"CPU": 1.0}


def test_plan_is_a_tune_resources_callable():
    from ray.tune import PlacementGroupFactory

    plan = plan_resources(["mobilenet_v2"], GPU_CLUSTER, 0.25)
    pgf = plan({"point": {"trial_id": "x", "trial": {"arch": "mobilenet_v2"}}})
    assert isinstance(pgf, PlacementGroupFactory)
    assert pgf.required_resources == {"CPU": 1.0, "GPU": 0.25}


@pytest.mark.parametrize("value", ["2", "-0.5", "half", ""])
def test_bad_gpus_per_trial(value):
    with pytest.raises(UserError, match="--gpus-per-trial"):
        parse_gpus_per_trial(value)


def test_gpus_and_cpus_per_trial_parse():
    assert parse_gpus_per_trial("auto") is None
    assert parse_gpus_per_trial("0.25") == 0.25
    assert parse_cpus_per_trial("0.5") == 0.5
    with pytest.raises(UserError, match="--cpus-per-trial"):
        parse_cpus_per_trial("0")


# ---------------------------------------------------------------- spreading over a node's GPUs
GPUS = ["0", "1", "2", "3"]


def test_fractional_trials_go_to_the_least_loaded_gpu():
    claims: list[tuple[str, float]] = []
    for _ in range(8):
        claims.append((choose_gpu(GPUS, claims, 0.25, fallback="0"), 0.25))
    assert sorted(g for g, _ in claims) == ["0", "0", "1", "1", "2", "2", "3", "3"]


def test_a_gpu_never_takes_more_than_its_capacity():
    claims = [("0", 0.5), ("0", 0.25), ("1", 0.5), ("2", 0.5), ("3", 0.5)]
    assert choose_gpu(GPUS, claims, 0.5, fallback="9") in {"1", "2", "3"}
    full = [(g, 0.875) for g in GPUS]
    assert choose_gpu(GPUS, full, 0.25, fallback="9") == "9", "no room anywhere: Ray's own choice"
    assert choose_gpu(GPUS, full, 0.125, fallback="9") == "0"


def test_ties_rotate_over_the_gpus_given_out_least():
    assert choose_gpu(GPUS, [], 0.25, assigned={"0": 3, "1": 1, "2": 1, "3": 2}) == "1"


def _claim_and_hold(path: str, pid_file: str, barrier) -> None:
    import os

    ledger = GpuLedger(Path(path))
    gpu = ledger.claim(os.getpid(), GPUS, 0.25, fallback="0")
    Path(pid_file).write_text(gpu)
    barrier.wait(timeout=60)  # hold the claim until every process has claimed


def test_ledger_spreads_concurrent_processes_and_forgets_dead_ones(tmp_path):
    """Eight processes claim a quarter GPU each at the same moment, as eight trials starting on
    a 4-GPU node do: two per GPU, none over capacity. When they have exited, their claims are
    gone."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(8)
    path = tmp_path / "ledger.json"
    procs = [ctx.Process(target=_claim_and_hold, args=(str(path), str(tmp_path / f"p{i}"), barrier))
             for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    assert all(p.exitcode == 0 for p in procs)
    chosen = sorted((tmp_path / f"p{i}").read_text() for i in range(8))
    assert chosen == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert GpuLedger(path).claims() == {}, "claims of exited processes must not block new trials"


def test_ledger_claim_is_replaced_released_and_pinned(tmp_path):
    import os

    ledger = GpuLedger(tmp_path / "ledger.json")
    me = os.getpid()
    first = ledger.claim(me, GPUS, 0.5, fallback="0")
    second = ledger.claim(me, GPUS, 0.5, fallback="0")  # a reused actor's next trial
    assert list(ledger.claims()) == [str(me)] and {first, second} <= set(GPUS)
    assert ledger.claim(me, GPUS, 0.5, fallback="0", pinned="3") == "3", \
        "a process whose CUDA started on GPU 3 can only use GPU 3"
    ledger.release(me)
    assert ledger.claims() == {}


def test_memory_caps_of_the_auto_plan_hold_each_architectures_registry_peak():
    from trainables.device import memory_fraction_for

    for memory in (24.0, 80.0):
        plan = plan_resources(STUDY_ARCHS, ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=memory), None)
        for name in STUDY_ARCHS:
            cap_gb = memory_fraction_for(plan.for_arch(name).gpu, int(memory * 2**30)) * memory
            assert cap_gb >= ARCHS[name].peak_memory_gb, (name, memory, cap_gb)


# ------------------------------------------------------------------------------- GPU preflight
def _node(facts=None, code="abc123", error=None, address="10.0.0.7"):
    from sweep.resources import GpuNodeReport

    return GpuNodeReport("n1", address, 4.0, facts, 24.0 if facts else None, code, error)


def test_gpu_preflight_names_the_node_and_the_cause():
    from sweep.preflight import check_gpu_nodes
    from tests.unit.trainables.test_device import broken, facts

    good = facts().to_dict()
    no_driver = broken(driver_version=None).to_dict()
    cluster = ClusterInfo(16, 8, 24.0, "ray cluster", (_node(good), _node(no_driver, address="10.0.0.8")))
    problems, notes = check_gpu_nodes(cluster, "abc123")
    assert len(problems) == 1 and not notes
    assert "GPU node 10.0.0.8 (4 GPU)" in problems[0] and "--gpus all" in problems[0]
    # simulated clusters: the same node is a note
    problems, notes = check_gpu_nodes(cluster, "abc123", logical_ok=True)
    assert not problems and "logical GPUs only" in notes[0]


def test_gpu_preflight_refuses_nodes_running_other_code_and_notes_silent_ones():
    from sweep.preflight import check_gpu_nodes
    from tests.unit.trainables.test_device import facts

    cluster = ClusterInfo(16, 8, 24.0, "ray cluster",
                          (_node(facts().to_dict(), code="def456"), _node(error="no answer within 120 s")))
    problems, notes = check_gpu_nodes(cluster, "abc123")
    assert len(problems) == 1 and "runs code def456, the driver abc123" in problems[0]
    assert len(notes) == 1 and "no answer within 120 s" in notes[0]


def test_measured_peaks_replace_the_table_estimate_in_the_plan():
    """The one sizing rule, fed by the memory check's measurement where there is one."""
    cluster = ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=24.0)
    estimated = plan_resources(["vgg11_bn", "resnet18"], cluster, None)
    measured = plan_resources(["vgg11_bn", "resnet18"], cluster, None, peak_memory_gb={"vgg11_bn": 5.0})
    assert measured.for_arch("vgg11_bn").gpu == fraction_for(trials_per_gpu(5.0, 24.0)) == fraction_for(3)
    assert measured.for_arch("vgg11_bn").gpu > estimated.for_arch("vgg11_bn").gpu
    assert measured.for_arch("resnet18") == estimated.for_arch("resnet18")  # not measured: the table's
