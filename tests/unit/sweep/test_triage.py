"""--triage: the grid reduced to the linear probe, and the command it prints afterwards."""

from __future__ import annotations

import pytest

from sweep.grid import GridSpec, build_grid
from sweep.triage import next_command, triage_spec
from trainables.errors import UserError
from trainables.presets import PRESETS


def test_triage_grid_is_the_probe_of_every_requested_architecture():
    spec = triage_spec(GridSpec(PRESETS["paper"], seeds=5))
    configs = build_grid(spec)
    assert [(c.arch, c.regime, c.seed) for c in configs] == [
        (a, "linear_probe", 0) for a in PRESETS["paper"].archs]
    with pytest.raises(UserError, match="--triage runs the linear probe only"):
        triage_spec(GridSpec(PRESETS["paper"], regimes=("finetune",)))


def test_triage_prints_the_users_command_for_the_shortlist():
    argv = ["--preset", "paper", "--triage", "--archs", "resnet18", "vgg11_bn", "--data", "/d x"]
    assert next_command(argv, ["vgg11_bn"]) == (
        "python -m sweep.run --preset paper --data '/d x' --archs vgg11_bn")
