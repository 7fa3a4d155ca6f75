"""The registry's memory estimates and the schedule's FLOP table are what the tracer derives
(bench/footprint.py), checked on the architectures cheap enough to trace in a test."""

from __future__ import annotations

import pytest

from trainables.archs import ARCHS
from trainables.footprint import registry_peak_gb, trace
from trainables.regimes import STUDY_REGIMES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_0"])
def test_registry_peak_memory_and_flops_are_the_traced_ones(arch):
    rows = [trace(arch, regime) for regime in STUDY_REGIMES]  # the probe trains no network
    assert ARCHS[arch].peak_memory_gb == registry_peak_gb(max(r.trial_peak for r in rows))
    assert ARCHS[arch].forward_gflop == pytest.approx(rows[0].forward_gflop_per_image, abs=0.01)
