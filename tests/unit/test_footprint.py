"""Memory per trial from a traced step (trainables/footprint.py), checked against the real CPU
allocator; the probe's CPU path (sweep/probe.py); measured peaks in the resource plan."""

from __future__ import annotations

import pytest
import torch

from sweep.probe import Probe, gpu_peaks, measure
from sweep.resources import ClusterInfo, fraction_for, plan_resources, trials_per_gpu
from trainables.footprint import measured_cpu_peak, trace
from trainables.models import build_model
from trainables.presets import get_preset

SIZE = 64  # small crops: the same code paths, seconds instead of minutes


def _real_peak(arch: str, regime: str) -> int:
    config = get_preset("paper").trial(arch, regime, 0, "all")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    return measured_cpu_peak(model, torch.randn(6, 3, SIZE, SIZE), torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_0"])
def test_traced_training_step_matches_the_real_cpu_allocator(arch):
    traced = trace(arch, "finetune", input_size=SIZE)
    real = _real_peak(arch, "finetune")
    assert traced.peak == pytest.approx(real, rel=0.03)


def test_feature_extraction_trace_misses_only_kernel_scratch_space():
    traced = trace("squeezenet1_0", "feature_extract", input_size=SIZE)
    real = _real_peak("squeezenet1_0", "feature_extract")
    assert 0.8 * real <= traced.peak <= real


def test_components_follow_the_regime():
    ft = trace("resnet18", "finetune", input_size=SIZE, eval_batch=16)
    fe = trace("resnet18", "feature_extract", input_size=SIZE, eval_batch=16)
    n_params = sum(p.numel() for p in build_model(get_preset("paper").trial("resnet18", "finetune", 0, "all"),
                                                  2, pretrained=False).parameters())
    assert ft.params == fe.params == 4 * n_params
    assert ft.grads == ft.optimizer == ft.params  # every weight trains, one momentum buffer each
    assert fe.grads == fe.optimizer == 4 * (512 * 2 + 2)  # the new head only
    assert ft.peak > fe.peak and ft.activations > fe.activations
    assert ft.eval_peak == fe.eval_peak  # the same model evaluated at the same batch
    assert ft.trial_peak == max(ft.peak, ft.eval_peak)
    assert trace("resnet18", "finetune", input_size=SIZE, eval_batch=64).eval_peak > ft.eval_peak
    assert ft.forward_gflop_per_image == pytest.approx(3.63 * (SIZE / 224) ** 2, rel=0.02)


def test_probe_measures_on_the_cpu_without_cuda_and_the_sweep_ignores_it():
    probe = measure("squeezenet1_0", "smoke")
    assert probe.device == "cpu" and not probe.on_gpu
    assert probe.peak_gb * 1e9 == pytest.approx(_real_peak_smoke("squeezenet1_0"), rel=0.05)
    assert gpu_peaks([probe]) == {}
    assert gpu_peaks([probe, Probe("resnet18", "cuda:NVIDIA A10G", 0.9, 0.7, 0.01)]) == {"resnet18": 0.9}


def _real_peak_smoke(arch: str) -> int:
    config = get_preset("smoke").trial(arch, "finetune", 0, "all")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    return measured_cpu_peak(model, torch.randn(6, 3, 64, 64), torch.zeros(6, dtype=torch.long))


def test_measured_peaks_replace_the_registry_estimate_in_the_plan():
    cluster = ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=24.0)
    estimated = plan_resources(["vgg11_bn", "resnet18"], cluster, None)
    measured = plan_resources(["vgg11_bn", "resnet18"], cluster, None, peak_memory_gb={"vgg11_bn": 5.0})
    assert measured.for_arch("vgg11_bn").gpu == fraction_for(trials_per_gpu(5.0, 24.0)) == fraction_for(3)
    assert measured.for_arch("vgg11_bn").gpu > estimated.for_arch("vgg11_bn").gpu
    assert measured.for_arch("resnet18") == estimated.for_arch("resnet18")  # not probed: registry
