"""code_version names the code that ran: the git commit, on cluster nodes (no .git) the stamped
commit, and never a bare commit for code that differs from it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from trainables import provenance
from trainables.provenance import SOURCE_PACKAGES, STAMP_FILE, git_version, version_of


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def copy_project(dest: Path) -> Path:
    """The project's packages and pyproject.toml, as `ray up` syncs them."""
    for pkg in SOURCE_PACKAGES:
        shutil.copytree(PROJECT_ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.fixture
def checkout(tmp_path) -> tuple[Path, str]:
    root = copy_project(tmp_path / "repo")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "x")
    return root, git(root, "rev-parse", "HEAD")[:12]


def test_this_checkout_reports_its_commit():
    head = git(PROJECT_ROOT, "rev-parse", "HEAD")[:12]
    assert version_of(PROJECT_ROOT).startswith(head)


def test_a_synced_copy_without_git_reports_the_stamped_commit(checkout, capsys):
    root, commit = checkout
    assert version_of(root) == commit
    assert provenance.main(["stamp", "--root", str(root)]) == 0
    shutil.rmtree(root / ".git")  # what cluster.yaml's rsync_exclude does
    assert version_of(root) == commit
    assert provenance.main(["check", "--root", str(root)]) == 0
    assert commit in capsys.readouterr().out


def test_code_edited_after_stamping_never_reports_the_bare_commit(checkout, capsys):
    root, commit = checkout
    provenance.main(["stamp", "--root", str(root)])
    shutil.rmtree(root / ".git")
    with open(root / "trainables" / "engine.py", "a") as f:
        f.write("\n# edited after the stamp\n")
    version = version_of(root)
    assert version.startswith(f"{commit}+changed-src-") and version != commit
    assert provenance.main(["check", "--root", str(root)]) == 1
    assert "edited after stamping" in capsys.readouterr().err


def test_no_git_and_no_stamp_says_so(tmp_path, capsys):
    root = copy_project(tmp_path / "synced")
    version = version_of(root)
    assert version.startswith("pkg-") and "+src-" in version
    assert provenance.main(["check", "--root", str(root)]) == 1
    assert "provenance stamp" in capsys.readouterr().err
    assert provenance.main(["stamp", "--root", str(root)]) == 2  # nothing to stamp without git


def test_a_copy_inside_another_repository_does_not_borrow_its_commit(tmp_path):
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    (outer / "README").write_text("x")
    git(outer, "add", ".")
    git(outer, "commit", "-q", "-m", "outer")
    inner = copy_project(outer / "feature-reuse")
    assert git_version(inner) is None
    assert not version_of(inner).startswith(git(outer, "rev-parse", "HEAD")[:12])


def test_the_stamp_is_not_committed():
    assert STAMP_FILE in (PROJECT_ROOT / ".gitignore").read_text().split()
