"""Longest-expected-first ordering (sweep/schedule.py) and the wall-time accounting
(sweep/wall_time.py: floor, ratio, Ray's per-trial latency)."""

from __future__ import annotations

import pytest

from sweep.grid import GridSpec, build_grid, with_ids
from sweep.progress import Span, SweepState
from sweep.schedule import expected_gflop, longest_first, train_images
from sweep.wall_time import timings, wall_time
from trainables.archs import ARCHS
from trainables.presets import get_preset
from trainables.regimes import REGIMES

COUNTS = {"train": {"a": 70, "b": 68}, "val": {"a": 23, "b": 23}, "test": {"a": 23, "b": 23},
          "ood": {"a": 84, "b": 84}}


def test_every_table_architecture_has_a_cost():
    assert all(a.forward_gflop and a.forward_gflop > 0 for a in ARCHS.values())


def test_cost_is_images_times_epochs_times_flops():
    paper = get_preset("paper")
    c = paper.trial("resnet18", "finetune", 0, "all")
    per_epoch = 138 * REGIMES["finetune"].passes_per_image + 46
    assert expected_gflop(c, COUNTS) == pytest.approx(3.63 * (30 * per_epoch + 46 + 168))
    fe = paper.trial("resnet18", "feature_extract", 0, "all")
    assert expected_gflop(fe, COUNTS) < expected_gflop(c, COUNTS) / 2
    # a smaller crop costs less by its area; fewer train images cost less
    small = get_preset("demo").trial("resnet18", "finetune", 0, "all")
    assert expected_gflop(small, COUNTS) < expected_gflop(c, COUNTS)
    assert train_images(paper.trial("resnet18", "finetune", 0, "20"), COUNTS["train"]) == 40
    assert train_images(paper.trial("resnet18", "finetune", 0, "0.5"), COUNTS["train"]) == 35 + 34


def test_longest_first_orders_a_mixed_grid_and_keeps_ties_in_grid_order():
    spec = GridSpec(preset=get_preset("paper"), archs=("squeezenet1_0", "vgg11_bn", "resnet18"), seeds=2)
    points = with_ids(build_grid(spec), "m0")
    ordered = longest_first(points, COUNTS)
    costs = [expected_gflop(p.config, COUNTS) for p in ordered]
    assert costs == sorted(costs, reverse=True)
    assert (ordered[0].config.arch, ordered[0].config.regime) == ("vgg11_bn", "finetune")
    assert ordered[-1].config.arch == "squeezenet1_0" and ordered[-1].config.regime == "feature_extract"
    seeds = [p.config.seed for p in ordered if (p.config.arch, p.config.regime) == ("vgg11_bn", "finetune")]
    assert seeds == [0, 1]  # equal costs: grid order


def _state(spans, slots=2, start=100.0):
    state = SweepState(start=start)
    state.spans, state.max_running = spans, slots
    return state


def test_wall_time_attributes_every_slot_second():
    # 2 slots; Tune starts at 100, Ray was started at 95, the driver finishes at 132
    spans = [Span("a", 103, 120, "done"), Span("b", 104, 110, "done"), Span("c", 110.5, 118, "done"),
             Span("d", 118.25, 125, "done")]
    w = wall_time(spans, 2, tune_start=100, started=95, ended=132)
    assert w.busy == 17 + 6 + 7.5 + 6.75
    assert w.longest == 17
    assert w.cold == [3, 4] and w.handovers == [0.5, 0.25]
    assert w.tail == 125 - 120
    assert (w.startup, w.shutdown) == (5, 7)
    assert w.floor == pytest.approx(w.busy / 2)
    total = w.busy + sum(w.cold) + sum(w.handovers) + w.tail + w.slots * w.outside
    assert total == pytest.approx(w.slots * w.wall)
    assert w.ratio == pytest.approx(37 / (37.25 / 2))


def test_a_long_trial_sets_the_floor_and_retries_count_as_one_trial():
    spans = [Span("long", 1, 40, "failed"), Span("long", 41, 90, "done"), Span("s", 1, 10, "done")]
    w = wall_time(spans, 2, tune_start=0, started=0, ended=90)
    assert w.longest == 39 + 49 and w.floor == 88 and w.ratio == pytest.approx(90 / 88)
    assert w.handovers == [1.0]


def test_summary_lines_name_ratio_floor_and_latency():
    spans = [Span("a", 103, 120, "done"), Span("b", 104, 110, "done"), Span("c", 110.5, 118.5, "done")]
    lines = timings(_state(spans), 95, 130, ["a", "b", "c"], verbose=True)
    text = "\n".join(lines)
    assert lines[0] == "wall time 0:35 (35 s) for 3 trials; trials computed 31 s on 2 slots"
    assert "wall / floor = 2.059: floor 17 s = max(31 s / 2 slots, longest trial 17 s)" in text
    assert "median 0.50 s, max 0.50 s over 1 handover;" in text
    assert "Ray overhead" not in text
    assert timings(_state([]), 0, 10, []) == ["wall time 0:10 (10 s) for 0 trials"]


def test_the_summary_shows_timing_internals_only_when_verbose():
    spans = [Span("a", 103, 120, "done"), Span("b", 104, 110, "done")]
    plain = timings(_state(spans), 95, 130, ["a", "b"])
    assert plain == ["wall time 0:35 (35 s) for 2 trials; trials computed 23 s on 2 slots"]
    verbose = timings(_state(spans), 95, 130, ["a", "b"], verbose=True)
    assert verbose[0] == plain[0] and any(line.startswith("wall / floor") for line in verbose)
