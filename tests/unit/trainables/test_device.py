"""trainables/device.py and the CUDA facts of provenance.py: device choice without a silent CPU
fallback, precision and determinism switches, memory caps and peaks. The CUDA facts are injected
(this machine has no GPU), except where reading this machine's real facts is the point."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from trainables import device as dev
from trainables.device import DeviceError
from trainables.errors import UserError
from trainables.provenance import CudaFacts, GpuFacts, nvidia_driver_version

GiB = 2**30
A10G = GpuFacts(0, "NVIDIA A10G", (8, 6), 24 * GiB)
V100 = GpuFacts(0, "Tesla V100-SXM2-16GB", (7, 0), 16 * GiB)
ARCHS_CU130 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")


def facts(**changes) -> CudaFacts:
    """A healthy single-A10G worker as Ray starts a 1-GPU trial on it; `changes` break it."""
    base = CudaFacts(torch_version="2.14.1+cu130", torch_cuda="13.0", arch_list=ARCHS_CU130,
                     visible_devices="0", driver_version="580.65.06", device_count=1,
                     init_error=None, gpus=(A10G,))
    return dataclasses.replace(base, **changes)


def broken(**changes) -> CudaFacts:
    return facts(device_count=0, gpus=(), **changes)


# ---------------------------------------------------------------- Ray gave a GPU, CUDA fails
def test_this_machine_gpu_assigned_but_no_cuda_fails_at_once_with_the_cause():
    """The real facts of this GPU-less machine, as a trial Ray gave GPU 0 would read them."""
    real = CudaFacts.read()
    assert not real.usable
    with pytest.raises(DeviceError) as err:
        dev.select_device(["0"], real, logical_ok=False)
    text = str(err.value)
    assert "Ray assigned GPU 0" in text and "CUDA is unusable" in text
    assert "no NVIDIA driver" in text and "--gpus all" in text  # the cause and the fix
    assert f"torch {torch.__version__}" in text  # the torch build is named


@pytest.mark.parametrize("case, expected", [
    (dict(torch_cuda=None, torch_version="2.14.1+cpu", arch_list=()), "CPU-only build"),
    (dict(visible_devices=""), "CUDA_VISIBLE_DEVICES='' hides every GPU"),
    (dict(driver_version=None, init_error="Found no NVIDIA driver on your system"),
     "without GPU passthrough"),
    (dict(driver_version="570.86.15", init_error="The NVIDIA driver on your system is too old"),
     "driver 570.86.15 is too old for torch's CUDA 13.0 (needs >= 580.65.06)"),
    (dict(torch_cuda="12.8", driver_version="535.104.05", init_error="CUDA unknown error"),
     "CUDA failed to initialise: CUDA unknown error"),
])
def test_each_cause_is_named(case, expected):
    with pytest.raises(DeviceError, match="Ray assigned GPU 0") as err:
        dev.select_device(["0"], broken(**case), logical_ok=False)
    assert expected in str(err.value)


def test_driver_new_enough_for_cuda_12_is_not_blamed():
    f = broken(torch_cuda="12.8", driver_version="550.54.15", init_error="CUDA unknown error")
    assert "too old" not in f.diagnosis()


def test_logical_gpus_train_on_cpu_only_when_allowed(monkeypatch):
    assert dev.select_device(["2"], broken(driver_version=None), logical_ok=True) == torch.device("cpu")
    monkeypatch.setenv(dev.LOGICAL_GPUS_ENV, "1")
    assert dev.select_device(["2"], broken(driver_version=None)) == torch.device("cpu")
    monkeypatch.setenv(dev.LOGICAL_GPUS_ENV, "0")
    with pytest.raises(DeviceError):
        dev.select_device(["2"], broken(driver_version=None))


def test_no_gpu_from_ray_means_cpu_even_with_cuda():
    assert dev.select_device([], facts()) == torch.device("cpu")


@pytest.mark.parametrize("visible, ids, index", [("0", ["0"], 0), ("3", ["3"], 0),
                                                 ("1,3", ["3"], 1), (None, ["2"], 2)])
def test_the_assigned_gpu_is_the_device(visible, ids, index):
    f = facts(visible_devices=visible, device_count=4, gpus=(A10G,) * 4)
    assert dev.select_device(ids, f) == torch.device("cuda", index)


def test_assigned_gpu_missing_from_visible_devices_is_an_error():
    with pytest.raises(DeviceError, match="does not list it"):
        dev.select_device(["2"], facts(visible_devices="0,1", device_count=2, gpus=(A10G,) * 2))


def test_gpu_too_old_for_the_torch_build_is_an_error():
    with pytest.raises(DeviceError, match=r"Tesla V100.*compute capability 7\.0.*not supported"):
        dev.select_device(["0"], facts(gpus=(V100,)))


def test_arch_support_rules_and_this_torch_build():
    assert dev.arch_supported((8, 6), ["sm_80"])  # same major, newer minor: binary compatible
    assert not dev.arch_supported((8, 0), ["sm_86"])
    assert not dev.arch_supported((7, 0), ARCHS_CU130)
    assert dev.arch_supported((7, 0), ["compute_70"]) and not dev.arch_supported((6, 1), ["compute_70"])
    installed = torch.cuda.get_arch_list()
    if installed:  # the GPUs of cluster.yaml's workers run this build (A10G 8.6, H100 9.0)
        assert dev.arch_supported((8, 6), installed) and dev.arch_supported((9, 0), installed)


# ------------------------------------------------------------------- outside Ray (the CLI)
def test_cli_without_driver_uses_the_cpu():
    assert dev.select_device(None, broken(driver_version=None)) == torch.device("cpu")
    assert dev.select_device(None, CudaFacts.read()) == torch.device("cpu")  # this machine


def test_cli_with_a_driver_but_broken_cuda_refuses_and_says_how_to_choose_the_cpu():
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=''"):
        dev.select_device(None, broken(init_error="CUDA unknown error"))
    assert dev.select_device(None, broken(visible_devices="")) == torch.device("cpu")


def test_cli_with_working_cuda_uses_gpu_0():
    assert dev.select_device(None, facts(visible_devices=None)) == torch.device("cuda", 0)


# --------------------------------------------------------------------------------- facts
@pytest.mark.parametrize("text, version", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
     "GCC version:  gcc version 12.3.0", "550.54.15"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
     "(dvs-builder@U16-I3-B03-4-3)  Sun Jul 27 07:09:44 UTC 2025", "580.65.06"),
])
def test_driver_version_from_proc(tmp_path, text, version):
    proc = tmp_path / "version"
    proc.write_text(text)
    assert nvidia_driver_version(proc) == version


def test_facts_round_trip_through_json_dicts():
    f = facts(device_count=2, gpus=(A10G, dataclasses.replace(A10G, index=1)))
    again = CudaFacts.from_dict(f.to_dict())
    assert again == f and again.usable
    assert "CUDA 13.0" in f.summary() and "580.65.06" in f.summary()


# ------------------------------------------------------------------------------ precision
def test_bf16_only_on_gpus_that_have_it():
    cuda = torch.device("cuda", 0)
    dev.check_precision(cuda, bf16=True, capability=(8, 0), name="A100")
    dev.check_precision(cuda, bf16=True, capability=(9, 0), name="H100")
    with pytest.raises(DeviceError, match=r"Tesla T4 has 7\.5"):
        dev.check_precision(cuda, bf16=True, capability=(7, 5), name="Tesla T4")
    with pytest.raises(DeviceError, match="runs on cpu"):
        dev.check_precision(torch.device("cpu"), bf16=True)
    dev.check_precision(torch.device("cpu"), bf16=False)  # fp32 runs anywhere


def numerics() -> dict[str, object]:
    """PyTorch's numeric switches as they are now."""
    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "tf32": torch.backends.cuda.matmul.fp32_precision == "tf32",
            "tf32_conv": torch.backends.cudnn.conv.fp32_precision == "tf32",
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic}


@pytest.fixture
def restore_numerics():
    before = numerics()
    yield
    dev.apply_determinism(before["deterministic"], before["tf32"], before["cudnn_benchmark"])
    torch.backends.cudnn.deterministic = before["cudnn_deterministic"]


def test_determinism_switches_are_all_set_every_time(restore_numerics, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert dev.apply_determinism(deterministic=True, tf32=False, cudnn_benchmark=False) is None
    assert numerics() == {"deterministic": True, "tf32": False, "tf32_conv": False,
                          "cudnn_benchmark": False, "cudnn_deterministic": True}
    # the next trial of a reused actor, with the other settings: nothing of the first remains
    dev.apply_determinism(deterministic=False, tf32=True, cudnn_benchmark=True)
    assert numerics() == {"deterministic": False, "tf32": True, "tf32_conv": True,
                          "cudnn_benchmark": True, "cudnn_deterministic": False}


def test_cublas_workspace_is_set_from_a_processs_first_trial_on(restore_numerics, monkeypatch):
    """cuBLAS reads it once per process: a non-deterministic first trial must set it too, or a
    later deterministic trial of the same (reused) process could not be deterministic."""
    import os

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    dev.apply_determinism(deterministic=False, tf32=False, cudnn_benchmark=False)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == dev.CUBLAS_WORKSPACE
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice is kept
    dev.apply_determinism(True, False, False)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_and_benchmark_exclude_each_other(restore_numerics):
    with pytest.raises(UserError, match="exclude each other"):
        dev.apply_determinism(deterministic=True, tf32=False, cudnn_benchmark=True)


# --------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("share, total_gib, expected_gib", [
    (0.125, 24, 3.0 - 0.5), (0.25, 80, 20.0 - 0.5), (0.3333, 24, 0.3333 * 24 - 0.5)])
def test_memory_fraction_is_the_share_less_a_cuda_context(share, total_gib, expected_gib):
    fraction = dev.memory_fraction_for(share, total_gib * GiB)
    assert fraction * total_gib == pytest.approx(expected_gib)


def test_whole_gpu_is_not_capped_and_bad_shares_are_refused():
    assert dev.memory_fraction_for(1.0, 24 * GiB) == 1.0
    with pytest.raises(DeviceError, match="larger --gpus-per-trial"):
        dev.memory_fraction_for(0.01, 24 * GiB)  # 0.24 GB: less than a CUDA context
    with pytest.raises(ValueError):
        dev.memory_fraction_for(0.0, 24 * GiB)


def test_shares_of_one_gpu_with_their_contexts_never_exceed_it():
    from sweep.resources import MAX_TRIALS_PER_GPU, fraction_for

    assert dev.memory_fraction_for(fraction_for(1), 24 * GiB) == 1.0  # one trial: uncapped
    for n in range(2, MAX_TRIALS_PER_GPU + 1):
        share = fraction_for(n)
        caps = n * dev.memory_fraction_for(share, 24 * GiB) * 24 * GiB
        assert caps + n * dev.CUDA_CONTEXT_GB * GiB <= 24 * GiB + 1


def test_cpu_has_no_memory_cap():
    assert dev.set_memory_fraction(torch.device("cpu"), 0.25) is None


def test_cpu_peak_is_reset_per_trial():
    cpu = torch.device("cpu")
    dev.reset_peak_memory(cpu)
    before = dev.peak_memory(cpu)["peak_allocated_mb"]
    block = np.ones(300 * 2**20 // 8)  # 300 MiB touched
    during = dev.peak_memory(cpu)
    del block  # the trial ends; the next one starts
    dev.reset_peak_memory(cpu)
    after = dev.peak_memory(cpu)
    assert during["peak_allocated_mb"] >= before + 250
    assert after["peak_allocated_mb"] < during["peak_allocated_mb"] - 200, \
        "the next trial's peak must not include this one's"
    assert during["peak_reserved_mb"] is None


def test_description_says_when_a_logical_gpu_ran_on_the_cpu():
    label = dev.describe_device(torch.device("cpu"), gpu_ids=["3"])
    assert label.startswith("cpu:") and label.endswith("[Ray logical GPU 3, no CUDA]")
    plain = dev.describe_device(torch.device("cpu"))
    assert "logical" not in plain and f"({torch.get_num_threads()} threads)" in plain


def test_autocast_is_bf16_on_the_device_only_when_asked():
    cpu = torch.device("cpu")
    x = torch.randn(4, 4)
    with dev.autocast(cpu, bf16=False):
        assert (x @ x).dtype == torch.float32
    with dev.autocast(cpu, bf16=True):  # what the trial's device would compute (refused on CPUs
        assert (x @ x).dtype == torch.bfloat16  # by check_precision before any training)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_copy_of_the_optimizer_state_is_on_the_cpu_and_restores_exactly():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
    saved = dev.cpu_copy(opt.state_dict())
    buffers = [s["momentum_buffer"] for s in saved["state"].values()]
    assert buffers and all(b.device.type == "cpu" for b in buffers)
    original = [s["momentum_buffer"] for s in opt.state_dict()["state"].values()]
    assert all(b.data_ptr() != o.data_ptr() for b, o in zip(buffers, original, strict=True))
    opt.step()  # the optimizer moves on; the copy must not
    restored = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    restored.load_state_dict(saved)
    for a, b in zip(restored.state_dict()["state"].values(), saved["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert saved["param_groups"] == restored.state_dict()["param_groups"]
