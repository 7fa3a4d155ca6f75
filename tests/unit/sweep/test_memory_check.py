"""sweep/memory_check.py: the memory check measures with the trials' own peak reading, only its
GPU measurements size the fractions, and --probe is its old name for one release."""

from __future__ import annotations

import logging

import pytest

from sweep.memory_check import MemoryCheck, gpu_peaks, measure
from sweep.run import build_parser


def test_the_check_measures_the_cpu_without_cuda_and_the_sweep_ignores_it():
    check = measure("squeezenet1_0", "smoke")
    assert check.device == "cpu" and not check.on_gpu and check.allocated_gb is None
    # the process's peak resident set: at least the model, its gradients and its momentum
    assert check.peak_gb * 1e9 > 3 * 4 * 736_450 and check.seconds_per_step > 0
    assert gpu_peaks([check]) == {}
    gpu = MemoryCheck("resnet18", "cuda:NVIDIA A10G", 0.9, 0.7, 0.01)
    assert gpu_peaks([check, gpu]) == {"resnet18": 0.9}


def test_memory_check_flag_is_on_by_default_and_can_be_turned_off():
    assert build_parser().parse_args([]).memory_check is True
    assert build_parser().parse_args(["--no-memory-check"]).memory_check is False
    assert build_parser().parse_args(["--memory-check"]).memory_check is True


@pytest.mark.parametrize("old, new, value", [("--probe", "--memory-check", True),
                                             ("--no-probe", "--no-memory-check", False)])
def test_the_old_probe_flag_still_works_for_one_release_and_warns(old, new, value, caplog):
    with caplog.at_level(logging.WARNING, logger="sweep.memory_check"):
        args = build_parser().parse_args([old])
    assert args.memory_check is value
    assert f"{old} is deprecated" in caplog.text and f"use {new}" in caplog.text
