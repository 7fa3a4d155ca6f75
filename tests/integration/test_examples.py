"""Every example a user is shown runs: the commands in each CLI's --help and in the README's
command blocks.

Sweep and single-trial examples run for real as dry runs (`--dry-run` added; it does the whole
preflight: data, split, weights, storage, grid, expected time), in this process, with their
folders pointed at tiny generated ones (--data, --ood, --storage, --out, --config). The other
commands' examples (report, predict, export, weights) need a finished experiment: their options
are checked here by the command's own parser, and the commands themselves run in
test_report.py, test_predict.py and test_export.py. Lines inside `ray exec "..."` run on a
cluster (test_ray_up.py)."""

from __future__ import annotations

import re
import shlex
import sys

import pytest

from tests.conftest import PROJECT_ROOT, write_image

MODULES = {"sweep": "sweep.run", "train": "trainables.train", "report": "analysis.report",
           "weights": "trainables.weights", "predict": "feature_reuse.predict",
           "export": "feature_reuse.export"}
HELP_MODULES = ("sweep.run", "trainables.train", "analysis.report", "feature_reuse.predict",
                "feature_reuse.export")


def help_examples() -> list[str]:
    """Indented `python -m ...` lines of every CLI's --help (description and epilog)."""
    import importlib

    out = []
    for name in HELP_MODULES:
        module = importlib.import_module(name)
        text = module.build_parser().format_help()
        out += [m.strip() for m in re.findall(r"^\s+((?:python -m|feature-reuse) [^#\n]+)", text,
                                              flags=re.M)]
    return out


def readme_examples() -> list[str]:
    """The README's bash-block commands of this project's CLIs (continuations joined)."""
    text = (PROJECT_ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith((".venv/bin/python -m", ".venv/bin/feature-reuse")):
                out.append(line.removeprefix(".venv/bin/"))
    return out


def module_and_args(command: str) -> tuple[str, list[str]]:
    """The module and its arguments; a usage line's optional parts ([--out DIR], [ARCH ...])
    are taken as typed, without the brackets and the placeholder ARCH."""
    words = [w for w in shlex.split(command.replace("[", "").replace("]", ""))
             if w not in ("...", "ARCH")]
    if words[0] == "feature-reuse":
        return MODULES[words[1]], words[2:]
    assert words[:2] == ["python", "-m"], command
    return words[2], words[3:]


EXAMPLES = sorted(set(help_examples() + readme_examples()))


def test_examples_were_found():
    modules = {module_and_args(c)[0] for c in EXAMPLES}
    assert {"sweep.run", "trainables.train", "analysis.report", "feature_reuse.predict",
            "feature_reuse.export", "trainables.weights"} <= modules
    assert len(EXAMPLES) >= 15


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    for ci, cls in enumerate(("ants", "bees")):
        color = ((200, 40, 40), (40, 40, 200))[ci]
        for i in range(20):  # 12 train images per class: the demo's train size 10 fits
            write_image(root / "pool" / cls / f"{i}.jpg", color, seed=i)
        for i in range(3):
            write_image(root / "ood" / cls / f"{i}.jpg", color, seed=100 + i)
    (root / "settings.yaml").write_text("epochs: 3\n")
    return root


def pointed_at(args: list[str], folders, tmp_path) -> list[str]:
    """The example's folders replaced by generated ones (placeholders such as DIR or
    path/to/pool, and s3:// storage this machine cannot reach)."""
    where = {"--data": folders / "pool", "--ood": folders / "ood", "--storage": tmp_path / "runs",
             "--out": tmp_path / "out", "--config": folders / "settings.yaml"}
    out = list(args)
    for i, word in enumerate(out[:-1]):
        if word in where:
            out[i + 1] = str(where[word])
    return out


@pytest.mark.parametrize("command", EXAMPLES)
def test_every_example_runs(command, folders, tmp_path, sweep_main, monkeypatch, capsys,
                            caplog):
    module, args = module_and_args(command)
    args = pointed_at(args, folders, tmp_path)
    if module == "sweep.run":
        if "--storage" not in args:
            args += ["--storage", str(tmp_path / "runs")]
        caplog.set_level("INFO")
        assert sweep_main([*args, "--dry-run"]) == 0, caplog.text
        assert "expected wall time" in caplog.text
    elif module == "trainables.train":
        from trainables.train import main

        monkeypatch.setattr(sys, "argv", ["python -m trainables.train"])
        assert main([*args, "--dry-run"]) == 0, capsys.readouterr().err
    elif module == "trainables.weights":
        from trainables.weights import main

        if args[0] == "status":  # reads the caches only
            assert main(args) == 0
        else:  # import a file: test_weights.py imports real ones; here its options parse
            assert args[0] == "import" and len(args) == 2
    else:
        import importlib

        parser = importlib.import_module(module).build_parser()
        parser.parse_args(args)  # exits 2 on an option the command does not have
