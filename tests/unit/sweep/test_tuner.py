"""The points reach Tune one per trial, in the order the sweep chose."""

from __future__ import annotations

from ray.tune.search import Searcher

from sweep.tuner import GridPoints


def test_grid_points_hands_each_point_once_in_order_then_finishes():
    points = [{"trial_id": f"t{i}", "trial": {"seed": i}} for i in range(3)]
    searcher = GridPoints(points)
    handed = [searcher.suggest(f"ray-{i}") for i in range(3)]
    assert handed == [{"point": p} for p in points]
    assert searcher.suggest("ray-3") == Searcher.FINISHED
