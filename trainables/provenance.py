"""Provenance stamped on every result row: code version, library versions, device, host.

`code_version` is the git commit of the code that ran, never a guess. On a cluster node there
is no `.git` (cluster.yaml does not sync it), so the commit comes from `.code_version.json`,
written next to the code before it is synced:

    python -m trainables.provenance stamp     # in the repository, before `ray up`
    python -m trainables.provenance check     # on a node: exit 1 unless the stamp fits the code

The stamp also holds a hash of the source files. A node whose files no longer match it (code
edited after stamping) reports `<commit>+changed-src-<hash>`; without git and without a stamp,
`pkg-<version>+src-<hash>`. The hash covers the Python files of the three packages and
pyproject.toml, so two rows with the same code_version ran the same code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import platform
import socket
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STAMP_FILE = ".code_version.json"
SOURCE_PACKAGES = ("trainables", "sweep", "analysis")


def source_hash(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the packages' *.py files and pyproject.toml (paths and contents, sorted)."""
    files = sorted(p for pkg in SOURCE_PACKAGES for p in (root / pkg).rglob("*.py")
                   if "__pycache__" not in p.parts)
    if (root / "pyproject.toml").is_file():
        files.append(root / "pyproject.toml")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_version(root: Path = PROJECT_ROOT) -> str | None:
    """HEAD of the repository whose top level is `root` ("-dirty" with uncommitted changes to
    tracked files), or None: no git, or `root` is not a repository's top level (a folder inside
    some other repository must not borrow that repository's commit)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head[:12] + ("-dirty" if dirty else "")


def read_stamp(root: Path = PROJECT_ROOT) -> dict | None:
    try:
        stamp = json.loads((root / STAMP_FILE).read_text())
        return stamp if {"commit", "source_hash"} <= set(stamp) else None
    except (OSError, ValueError):
        return None


def write_stamp(root: Path = PROJECT_ROOT) -> dict:
    """Record the commit and the source hash of `root` (a git checkout) in its stamp file."""
    commit = git_version(root)
    if commit is None:
        raise RuntimeError(f"{root} is not the top level of a git checkout: nothing to stamp")
    stamp = {"commit": commit, "source_hash": source_hash(root),
             "stamped_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    (root / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
    return stamp


def version_of(root: Path = PROJECT_ROOT) -> str:
    """The code version of the tree at `root` (see the module docstring)."""
    commit = git_version(root)
    if commit is not None:
        return commit
    tree = source_hash(root)
    stamp = read_stamp(root)
    if stamp is not None:
        if stamp["source_hash"] == tree:
            return stamp["commit"]
        return f"{stamp['commit']}+changed-src-{tree[:10]}"
    from importlib import metadata

    try:
        package = metadata.version("feature-reuse")
    except metadata.PackageNotFoundError:
        package = "unknown"
    return f"pkg-{package}+src-{tree[:10]}"


@functools.cache
def code_version() -> str:
    return version_of(PROJECT_ROOT)


@functools.cache
def library_versions() -> str:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "ray", "numpy", "pillow", "pyarrow", "pandas",
                 "scikit-learn", "timm", "huggingface-hub"):  # absent ones are recorded as None
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


def hostname() -> str:
    return socket.gethostname()


def ray_node() -> str | None:
    """The id of the Ray node this process runs on, or None outside Ray (ray is not imported
    here: the single-trial CLI runs without it)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainables.provenance",
                                description="The code version stamp for nodes without .git.")
    p.add_argument("command", choices=("stamp", "check", "show"),
                   help="stamp: write .code_version.json (in a git checkout, before `ray up`); "
                        "check: exit 1 unless the stamp matches the code here; show: print "
                        "the code version rows will carry")
    p.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = args.root
    if args.command == "stamp":
        try:
            stamp = write_stamp(root)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        note = " (uncommitted changes: the rows say -dirty)" if stamp["commit"].endswith("-dirty") else ""
        print(f"stamped {root / STAMP_FILE}: {stamp['commit']}{note}")
        return 0
    if args.command == "show":
        print(version_of(root))
        return 0
    stamp = read_stamp(root)
    if git_version(root) is not None:
        print(f"ok: a git checkout, code version {git_version(root)}")
        return 0
    if stamp is None:
        print(f"error: {root / STAMP_FILE} is missing, so result rows could not name the commit. "
              "Fix: run `python -m trainables.provenance stamp` in the repository, then "
              "`ray up cluster.yaml` again", file=sys.stderr)
        return 1
    if stamp["source_hash"] != source_hash(root):
        print(f"error: the code here differs from what {STAMP_FILE} stamped ({stamp['commit']}, "
              f"{stamp.get('stamped_at', '?')}): it was edited after stamping. Fix: run `python -m "
              "trainables.provenance stamp` again, then `ray up cluster.yaml`", file=sys.stderr)
        return 1
    print(f"ok: code version {stamp['commit']} (stamped {stamp.get('stamped_at', '?')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
