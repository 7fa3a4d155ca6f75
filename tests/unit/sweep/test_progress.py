"""The compact live view: counts, ETA and best val accuracy per arch x regime."""

from __future__ import annotations

import io

from sweep.progress import SweepProgress, SweepState, TrialView, fmt_duration


def state_with(now: float) -> SweepState:
    state = SweepState(start=now - 100, skipped=2)
    state.previous_best[("mobilenet_v2", "scratch")] = 0.61
    state.trials = {
        "a": TrialView("mobilenet_v2", "finetune", 0, "all", 10, epoch=10, best_val_acc=0.9,
                       status="done", started=now - 100, finished=now - 50),
        "b": TrialView("mobilenet_v2", "finetune", 1, "all", 10, epoch=5, best_val_acc=0.95,
                       status="running", started=now - 50),
        "c": TrialView("resnet18", "feature_extract", 0, "all", 10, status="pending"),
        "d": TrialView("resnet18", "scratch", 0, "all", 10, status="failed", epoch=3,
                       started=now - 90, finished=now - 80),
    }
    return state


def test_counts_and_eta():
    now = 1_000_000.0
    state = state_with(now)
    assert state.counts() == {"done": 1, "running": 1, "pending": 1, "failed": 1}
    # 10 + 5 + 10 (failed counts as spent) epochs in 100 s since the first start; 15 left
    assert state.eta_seconds(now) == 15 / (25 / 100)


def test_render_shows_counts_eta_and_best_per_arch_and_regime():
    now = 1_000_000.0
    lines = state_with(now).render(now)
    assert lines[0].startswith("[  1:40] 1/4 done (+2 finished earlier), 1 running, 1 pending, "
                               "1 failed | ETA 1:00")
    header = lines[1].split()
    assert header[-3:] == ["finetune", "feature_extract", "scratch"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["mobilenet_v2"] == ["0.950", "--", "0.610"]  # running trial's best so far counts
    assert rows["resnet18"] == ["--", "--", "--"]


def test_log_output_prints_events_and_throttles_updates():
    now = 1_000_000.0
    out = io.StringIO()
    view = SweepProgress(state_with(now), out=out, interval=3600, live=False)
    view.draw(force=True)
    first = out.getvalue()
    view._dirty = True
    view.draw()  # within the interval: nothing
    assert out.getvalue() == first
    view.event("  done    something")
    text = out.getvalue()
    assert "  done    something\n" in text and text.count("best val acc") == 2
    assert "\x1b[" not in text  # no terminal control codes in a log file


def test_terminal_output_redraws_in_place():
    out = io.StringIO()
    view = SweepProgress(state_with(1_000_000.0), out=out, live=True)
    view.draw(force=True)
    view.draw(force=True)
    assert "\x1b[4F\x1b[J" in out.getvalue()  # cursor up over the 4-line block, then clear


def test_fmt_duration():
    assert fmt_duration(None) == "--"
    assert fmt_duration(59.6) == "1:00"
    assert fmt_duration(3725) == "1:02:05"
