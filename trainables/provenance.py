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

Also what CUDA looks like to this process, and why it is unusable when it is (the device a row
names): `CudaFacts.read()` gathers the facts that decide it (torch's CUDA build and kernels, the
NVIDIA driver, CUDA_VISIBLE_DEVICES, torch's own initialisation error) and `diagnosis()` names the
first cause with its fix. Device selection (`trainables.device`) reads them in each trial; the
sweep's GPU preflight ships them from every GPU node (`sweep.resources`). They are plain data, so
that each cause is tested on a machine without a GPU. torch is imported only when they are read:
`python -m trainables.provenance stamp` runs before anything is installed on a node.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
"""Oldest NVIDIA Linux driver per CUDA major version (NVIDIA's minor-version compatibility); torch
wheels bring their own CUDA runtime, only the driver comes from the machine."""
_PINNED_VISIBLE: str | None = None
"""CUDA_VISIBLE_DEVICES when this process first initialised CUDA: CUDA ignores later changes."""


@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str
    capability: tuple[int, int]
    total_memory: int  # bytes


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether CUDA works in this process: `read()` reads them, tests build them."""

    torch_version: str
    torch_cuda: str | None  # torch.version.cuda; None for a CPU-only build
    arch_list: tuple[str, ...] = ()  # GPU architectures this build has kernels for
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES; None when unset
    driver_version: str | None = None  # the NVIDIA kernel driver; None: none seen
    device_count: int = 0
    init_error: str | None = None  # torch's own message when CUDA failed to initialise
    gpus: tuple[GpuFacts, ...] = ()

    @classmethod
    def read(cls) -> CudaFacts:
        """This process's facts. Initialises CUDA when torch has it (call it only where CUDA is
        wanted): afterwards CUDA_VISIBLE_DEVICES can no longer change."""
        import torch

        global _PINNED_VISIBLE
        visible, count, error, gpus = os.environ.get("CUDA_VISIBLE_DEVICES"), 0, None, []
        if torch.version.cuda:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    torch.cuda.init()
                    count = torch.cuda.device_count()
                except Exception as exc:  # torch raises RuntimeError/AssertionError with the cause
                    error = str(exc).strip() or type(exc).__name__
            if not count and not error:
                error = "; ".join(str(w.message) for w in caught) or "torch sees no CUDA device"
            if _PINNED_VISIBLE is None and torch.cuda.is_initialized():
                _PINNED_VISIBLE = visible if visible is not None else ""
            for i in range(count):
                p = torch.cuda.get_device_properties(i)
                gpus.append(GpuFacts(i, p.name, (p.major, p.minor), p.total_memory))
        arch = tuple(torch.cuda.get_arch_list()) if torch.version.cuda else ()
        return cls(torch.__version__, torch.version.cuda, arch, visible, nvidia_driver_version(),
                   count, error, tuple(gpus))

    @property
    def usable(self) -> bool:
        return self.device_count > 0 and self.init_error is None

    @property
    def gpu_present(self) -> bool:
        """An NVIDIA driver is visible here (so a GPU is meant to be used)."""
        return self.driver_version is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "usable": self.usable}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CudaFacts:
        d = {k: v for k, v in d.items() if k != "usable"}
        d["arch_list"] = tuple(d.get("arch_list", ()))
        d["gpus"] = tuple(GpuFacts(g["index"], g["name"], tuple(g["capability"]), g["total_memory"])
                          for g in d.get("gpus", ()))
        return cls(**d)

    def summary(self) -> str:
        build = f"CUDA {self.torch_cuda}" if self.torch_cuda else "CPU-only build"
        driver = f"NVIDIA driver {self.driver_version}" if self.driver_version else "no NVIDIA driver"
        visible = ("CUDA_VISIBLE_DEVICES unset" if self.visible_devices is None
                   else f"CUDA_VISIBLE_DEVICES={self.visible_devices!r}")
        return (f"torch {self.torch_version} ({build}), {driver}, {visible}, "
                f"{self.device_count} CUDA device(s)")

    def diagnosis(self) -> str:
        """Why CUDA is unusable here, and what to do about it (the first matching cause)."""
        if not self.torch_cuda:
            return (f"torch {self.torch_version} is a CPU-only build. Fix: install a CUDA build "
                    "of torch (the default Linux wheel from PyPI is one)")
        if self.visible_devices is not None and not visible_entries(self.visible_devices):
            return (f"CUDA_VISIBLE_DEVICES={self.visible_devices!r} hides every GPU from this "
                    "process. Fix: do not set it for Ray workers (Ray sets it per trial)")
        if self.driver_version is None:
            return ("no NVIDIA driver is visible (no /proc/driver/nvidia/version, no nvidia-smi): "
                    "the node has no GPU, or its container was started without GPU passthrough. "
                    "Fix: run the container with `--gpus all` (cluster.yaml does), and check "
                    "`nvidia-smi` on the node")
        needed = MIN_DRIVER.get((_numbers(self.torch_cuda) or (0,))[0])
        found = _numbers(self.driver_version)
        if needed and found and found < _numbers(needed):
            return (f"NVIDIA driver {self.driver_version} is too old for torch's CUDA "
                    f"{self.torch_cuda} (needs >= {needed}). Fix: use a newer driver (a current "
                    "AWS Deep Learning AMI), or a torch build for an older CUDA")
        if self.init_error:
            return f"CUDA failed to initialise: {self.init_error}"
        return "torch sees no CUDA device"


def nvidia_driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel driver's version, without initialising CUDA."""
    try:
        match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", proc_file.read_text())
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10) if smi else None
    except (OSError, subprocess.SubprocessError):
        out = None
    lines = out.stdout.strip().splitlines() if out and out.returncode == 0 else []
    return lines[0].strip() if lines else None


def _numbers(version: str | None) -> tuple[int, ...]:
    """"580.65.06" -> (580, 65, 6); anything unparsable -> ()."""
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return ()


def visible_entries(visible: str) -> list[str]:
    """The GPU ids CUDA_VISIBLE_DEVICES lists ("" lists none)."""
    return [v.strip() for v in visible.split(",") if v.strip()]


def cuda_pinned_visible() -> str | None:
    """CUDA_VISIBLE_DEVICES when this process initialised CUDA ('' when unset), or None while
    CUDA is not initialised (it can still be pointed at any GPU)."""
    import torch

    if _PINNED_VISIBLE is None and torch.version.cuda and torch.cuda.is_initialized():
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return _PINNED_VISIBLE


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
