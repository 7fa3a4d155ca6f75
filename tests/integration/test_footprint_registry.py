"""The architecture table's memory estimates and forward GFLOP are what the trace derives
(bench/footprint.py), checked on the architectures cheap enough to trace in a test."""

from __future__ import annotations

import pytest

from bench.footprint import table_peak_gb, trace
from trainables.archs import ARCHS
from trainables.regimes import STUDY_REGIMES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_0"])
def test_table_peak_memory_and_flops_are_the_traced_ones(arch):
    rows = [trace(arch, regime) for regime in STUDY_REGIMES]  # the linear probe trains no network
    assert ARCHS[arch].peak_memory_gb == table_peak_gb(max(r.trial_peak for r in rows))
    assert ARCHS[arch].forward_gflop == pytest.approx(rows[0].forward_gflop_per_image, abs=0.01)
