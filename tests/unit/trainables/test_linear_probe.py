"""The linear probe's setup: the regime and its config fields, its trainable set, its features
(the eval-mode penultimate layer of every registered architecture), the grid and --triage."""

from __future__ import annotations

import copy

import pytest
import torch

from sweep.grid import GridSpec, build_grid
from trainables.archs import ARCHS
from trainables.config import PROBE_C_GRID, TrialConfig
from trainables.errors import UserError
from trainables.linear_probe import choose, grid_edge_note, penultimate_extractor
from trainables.models import build_model
from trainables.presets import PRESETS, deviations, parse_sets
from trainables.regimes import STUDY_REGIMES


def test_the_paper_preset_runs_the_studys_regimes_only():
    assert PRESETS["paper"].regimes == STUDY_REGIMES, "the paper preset stays the study's protocol"
    assert "linear_probe" in PRESETS["demo"].regimes


def test_c_grid_is_a_recorded_config_field_and_can_be_overridden():
    config = TrialConfig("mobilenet_v2", "linear_probe")
    assert config.probe_c_grid == PROBE_C_GRID and '"probe_c_grid": [0.0001' in config.to_json()
    sets = parse_sets(["probe_c_grid=10, 0.1,1", "probe_standardize=false"])
    assert sets == {"probe_c_grid": (10.0, 0.1, 1.0), "probe_standardize": False}
    changed = TrialConfig("mobilenet_v2", "linear_probe", **sets)
    assert changed.probe_c_grid == (0.1, 1.0, 10.0), "sorted: one spelling, one trial id"
    assert TrialConfig(**changed.to_dict()) == changed, "rows' config_json rebuilds the config"


@pytest.mark.parametrize("value, message", [
    ("probe_c_grid=", "is not a list of numbers"),
    ("probe_c_grid=1,x", "is not a list of numbers"),
    ("probe_c_grid=1,inf", "is not a list of numbers"),
])
def test_bad_c_grids_are_named(value, message):
    with pytest.raises(UserError, match=message):
        parse_sets([value])


@pytest.mark.parametrize("grid", [(), (0.0, 1.0), (-1.0,), 5, ("a",)])
def test_config_refuses_bad_c_grids(grid):
    with pytest.raises(UserError, match="probe_c_grid must be one or more positive numbers"):
        TrialConfig("mobilenet_v2", "linear_probe", probe_c_grid=grid)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_probe_features_are_what_the_eval_mode_model_feeds_its_head(arch):
    """For every registered architecture: the extractor (fx, BatchNorm folded) outputs the input
    of the main head of the same model in eval mode (ImageNet statistics, dropout off)."""
    torch.manual_seed(0)
    model = build_model(TrialConfig(arch, "linear_probe"), 3, pretrained=False).eval()
    seen = []
    model.get_submodule(ARCHS[arch].heads[0]).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0]))
    size = 299 if arch == "inception_v3" else 64
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        model(x)
        got = penultimate_extractor(copy.deepcopy(model), ARCHS[arch])(x)["features"]
    assert got.shape == seen[0].shape
    assert torch.allclose(got, seen[0], rtol=1e-3, atol=1e-4 * float(seen[0].abs().max()))


def test_kept_c_is_best_score_then_lower_loss_then_smaller_c():
    grid = [{"c": 0.1, "select_score": 0.8, "val_loss": 0.3},
            {"c": 1.0, "select_score": 0.9, "val_loss": 0.5},
            {"c": 10.0, "select_score": 0.9, "val_loss": 0.4},
            {"c": 100.0, "select_score": 0.9, "val_loss": 0.4}]
    assert choose(grid) == 2
    assert grid_edge_note(1e4, PROBE_C_GRID) and grid_edge_note(1e-4, PROBE_C_GRID)
    assert grid_edge_note(1.0, PROBE_C_GRID) is None


def test_deviations_name_the_regime_outside_the_study():
    configs = build_grid(GridSpec(PRESETS["demo"]))
    found = deviations(configs, data="x", ood_kind="real", seeds=3)
    assert any("regimes outside the study: linear_probe" in d for d in found)


def test_c_grid_from_a_yaml_config_file(tmp_path):
    from trainables.presets import load_config_file

    path = tmp_path / "settings.yaml"
    path.write_text("probe_c_grid: [0.1, 1, 10]\nprobe_max_iter: 200\n")
    assert load_config_file(path) == {"probe_c_grid": (0.1, 1.0, 10.0), "probe_max_iter": 200}
    path.write_text("probe_c_grid: [0.1, yes]\n")
    with pytest.raises(UserError, match="is not a list of numbers"):
        load_config_file(path)


def test_a_yaml_boolean_is_not_a_number(tmp_path):
    """YAML reads `yes`/`true` as a bool, which Python would silently take as 1."""
    from trainables.presets import load_config_file

    path = tmp_path / "settings.yaml"
    for text in ("epochs: yes\n", "lr: true\n"):
        path.write_text(text)
        with pytest.raises(UserError):
            load_config_file(path)
