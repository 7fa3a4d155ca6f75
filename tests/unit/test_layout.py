"""The package layout's promises: no import cycles, light leaf modules, one console command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from feature_reuse.cli import COMMANDS, main
from tests.conftest import PROJECT_ROOT

PACKAGES = ("trainables", "sweep", "analysis", "feature_reuse")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports, at module level or inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def test_the_import_graph_has_no_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in graph[m]:
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


LAYERS = {"trainables": 0, "analysis": 1, "sweep": 2, "feature_reuse": 3}
"""Who may import whom: a package imports its own modules and those of lower layers only (the
sweep's triage reads analysis; nothing below reads the sweep or the console command)."""


def test_no_module_imports_upward():
    modules = _modules()
    upward = sorted(f"{m} -> {dep}" for m, path in modules.items() for dep in _imports(path, modules)
                    if LAYERS[dep.split(".")[0]] > LAYERS[m.split(".")[0]])
    assert not upward, upward


def test_each_regime_name_is_written_in_at_most_two_modules():
    """A regime is one record (trainables/regimes.py): its name as a string literal appears in at
    most two non-test modules (the table, and at most one other), everything else reads the table."""
    from trainables.regimes import REGIMES

    paths = [*_modules().values(), *sorted((PROJECT_ROOT / "bench").rglob("*.py"))]
    literals = {p: {n.value for n in ast.walk(ast.parse(p.read_text()))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)} for p in paths}
    for name in REGIMES:
        where = [p.relative_to(PROJECT_ROOT).as_posix() for p, found in literals.items() if name in found]
        assert "trainables/regimes.py" in where and len(where) <= 2, (name, where)


IMPORT_EACH_ALONE = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in {packages!r}]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}")
print("\\n".join(failed))
"""


def test_each_module_imports_alone():
    """Every module imported first, with no other project module loaded (one process, the
    project's modules dropped between imports; third-party libraries stay loaded)."""
    code = IMPORT_EACH_ALONE.format(packages=set(PACKAGES))
    proc = subprocess.run([sys.executable, "-c", code, *sorted(_modules())], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("module", ["trainables.archs", "trainables.arch_record", "trainables.regimes",
                                    "trainables.config",
                                    "trainables.data.manifest", "trainables.presets"])
def test_leaf_modules_do_not_import_torch(module):
    """The registry, config and manifest are data: analysis and the sweep's planner read them
    without a model library."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


MAX_LINES = 400
MAX_TRAINABLES_MODULES = 26
MAX_BENCH_LINES = 2_008
"""bench/ in lines, every file counted: 2,058 before the benches shared one harness, 1,906 after,
plus the data-starved claim's log-odds calibration (101). Issue 21 asks for 1,500: what every
command in docs/ and every test that drives a bench still needs does not fit in it, so this is a
ratchet: lower it when a bench goes, never raise it."""


def _trainables_modules() -> dict[str, Path]:
    """Every module of trainables/ and its subpackages, package __init__ files left out."""
    return {name: path for name, path in _modules().items()
            if name.split(".")[0] == "trainables" and path.name != "__init__.py"}


def test_every_module_is_at_most_400_lines():
    """No exception, whatever the docstring says: a module past it is split by idea."""
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_trainables_is_at_most_26_modules():
    """A newcomer can hold trainables/ in mind: subpackages count (trainables.data.*,
    trainables.results.*), package __init__ files do not."""
    modules = sorted(_trainables_modules())
    assert any(m.startswith("trainables.data.") for m in modules), "the walk must find subpackages"
    assert len(modules) <= MAX_TRAINABLES_MODULES, f"{len(modules)} modules: {modules}"


def test_bench_stays_within_its_line_budget():
    """Benchmarks share one harness (bench/harness.py) instead of growing their own: every file
    in bench/ counts, scripts and data alike."""
    files = [p for p in sorted((PROJECT_ROOT / "bench").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts]
    lines = {p.relative_to(PROJECT_ROOT).as_posix(): len(p.read_text().splitlines()) for p in files}
    assert "bench/harness.py" in lines, "the walk must find the benches"
    assert sum(lines.values()) <= MAX_BENCH_LINES, f"{sum(lines.values())} lines: {lines}"


def test_console_command_dispatches_to_each_cli(capsys):
    assert main([]) == 2 and "usage: feature-reuse" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_console_command_is_installed():
    exe = Path(sys.executable).parent / "feature-reuse"
    if not exe.exists():
        pytest.skip("feature-reuse not installed in this environment (make install installs it)")
    proc = subprocess.run([str(exe), "weights", "status"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "cache:" in proc.stdout
