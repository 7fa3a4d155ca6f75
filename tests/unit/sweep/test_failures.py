"""What the summary says when Ray reports an error: the right line of it."""

from __future__ import annotations

from types import SimpleNamespace

from sweep.failures import exception_line, first_line, trial_error

RAY_ERROR = """ray::ImplicitFunc.train() (pid=4242, ip=10.0.0.7, actor_id=abc)
  File "/x/trainables/engine.py", line 88, in fit
    loss.backward()
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def test_first_line_is_the_first_line():
    assert first_line(OSError("No space left on device\n(while writing part-3)")) == \
        "No space left on device"
    assert first_line(ValueError("\n  \nonly line")) == "only line"
    assert first_line(KeyError()) == "KeyError"  # no text: its type


def test_exception_line_finds_the_exception_in_a_traceback():
    assert exception_line(RAY_ERROR) == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert exception_line("the worker died\nwithout a word") == "without a word"
    assert exception_line("  \n") == ""
    assert len(exception_line("ValueError: " + "x" * 1000)) == 300


def test_trial_error_reads_rays_copy_when_storage_has_none(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text(RAY_ERROR)

    def unreadable():
        raise OSError("storage is gone")

    trial = SimpleNamespace(get_error=unreadable, error_file=str(error_file))
    assert trial_error(trial).startswith("RuntimeError: CUDA out of memory")
    assert trial_error(SimpleNamespace(get_error=lambda: None, error_file="/nope")) == ""
