"""The sweep's images travel with it: read once by the driver, handed to trials by Ray.

A data-starved dataset is small (hundreds of images, tens of MB), so the driver reads every file
the split manifest lists, once, and puts their bytes into Ray's object store as one object.
Each trial process fetches that object (from the nearest node holding a copy) and checks every
image against the manifest's content hash on arrival. No worker needs the data folder, and
`--data` may be anything the driver can read: a local folder or a pyarrow filesystem URI
(`s3://bucket/pool`, `gs://...`, `file:///...`), which preflight first mirrors into a local
temporary folder to validate and split it (see `mirror`).
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from trainables.data.manifest import matches, read_entry
from trainables.errors import DataError, UserError

log = logging.getLogger(__name__)

WARN_BYTES = 2 * 2**30
"""Above this, shipping through the object store still works but deserves a warning: every
trial process holds a copy of the bytes in memory."""


def is_uri(location: str | None) -> bool:
    return location is not None and "://" in location


def content_hash(data: bytes) -> str:
    """sha256 of the bytes, hex; a manifest entry's `sha256` is a prefix of it."""
    return hashlib.sha256(data).hexdigest()


def mirror(uri: str, what: str) -> str:
    """Copy the folder at `uri` (any pyarrow filesystem) into a local temporary folder, removed
    when this process exits; returns the local folder."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{what} {uri}: cannot open ({str(exc).strip().splitlines()[0]}). Fix: use "
                        "a local folder or a URI pyarrow can open (s3://bucket/prefix, gs://..., "
                        "file:///path) with its credentials set") from None
    if info.type != pafs.FileType.Directory:
        raise DataError(f"{what} {uri} does not exist or is not a folder")
    local = tempfile.mkdtemp(prefix="feature-reuse-data-")
    atexit.register(shutil.rmtree, local, True)
    try:
        pafs.copy_files(path, local, source_filesystem=fs)
    except OSError as exc:
        raise DataError(f"{what} {uri}: copying it failed ({exc})") from None
    return local


# ------------------------------------------------------------------------------ driver side
def read_all(entries: list[Any], source: Any) -> dict[tuple[str, str], bytes]:
    """{(root, path): bytes} for every entry, read from `source` (an image source such as
    DataRoots: `open(entry)` gives a binary file), checked against the manifest's hash: a file
    changed since the split was built is caught here, before any trial starts."""
    blobs: dict[tuple[str, str], bytes] = {}
    changed = []
    for e in entries:
        data = read_entry(source, e)
        if not matches(data, e):
            changed.append(f"{e.root}/{e.path}")
        blobs[(e.root, e.path)] = data
    if changed:
        raise DataError(f"{len(changed)} image(s) changed since the split manifest was built: "
                        f"{', '.join(changed[:5])}. Fix: run the sweep again (a new split) or "
                        "restore the files")
    return blobs


@dataclass(frozen=True)
class ShippedImages:
    """What every trial gets (picklable, small): where the bytes are in Ray's object store."""

    ref: Any  # ray.ObjectRef -> {(root, path): bytes}
    count: int
    nbytes: int

    def describe(self) -> str:
        size = (f"{self.nbytes / 2**20:.1f} MB" if self.nbytes >= 2**20 else
                f"{self.nbytes / 2**10:.0f} kB")
        return f"{self.count} images ({size}) read once, handed to trials through Ray's object store"


def ship(entries: list[Any], source: Any) -> ShippedImages:
    """Read every entry once and put the bytes into Ray's object store (owned by the driver,
    so they live as long as the sweep)."""
    import ray

    blobs = read_all(entries, source)
    nbytes = sum(len(b) for b in blobs.values())
    return ShippedImages(ray.put(blobs), len(blobs), nbytes)


def ship_images(entries: list[Any], source: Any) -> ShippedImages:
    """`ship`, logging what went into the object store and how long reading it took."""
    import time

    start = time.time()
    images = ship(entries, source)
    log.info("data: %s (%.1f s)", images.describe(), time.time() - start)
    if images.nbytes > WARN_BYTES:
        log.warning("every trial process holds the %.1f GB of images in memory; this tool is "
                    "built for small datasets", images.nbytes / 2**30)
    return images


# ------------------------------------------------------------------------------ trial side
_FETCHED: dict[str, dict[tuple[str, str], bytes]] = {}
"""Per process: the images of the sweep whose trials this (reused) actor runs, fetched once."""


class ShippedSource:
    """Trial side: the images of a ShippedImages, fetched from the object store once per
    process and verified on arrival. An image source like DataRoots (`open(entry)` gives a
    binary file), so the dataset code does not care where the bytes came from."""

    def __init__(self, shipped: ShippedImages) -> None:
        self.shipped = shipped
        self._blobs: dict[tuple[str, str], bytes] | None = None

    def _fetch(self) -> dict[tuple[str, str], bytes]:
        import ray

        key = self.shipped.ref.hex()
        if key not in _FETCHED:
            _FETCHED.clear()  # another sweep's images are not needed any more
            _FETCHED[key] = ray.get(self.shipped.ref)
        return _FETCHED[key]

    def open(self, entry: Any) -> io.BytesIO:
        return io.BytesIO(self.read(entry))

    def read(self, entry: Any) -> bytes:
        if self._blobs is None:
            self._blobs = self._fetch()
        try:
            data = self._blobs[(entry.root, entry.path)]
        except KeyError:
            raise DataError(f"image {entry.root}/{entry.path} is not among the "
                            f"{self.shipped.count} images the driver shipped") from None
        if not matches(data, entry):
            raise DataError(f"image {entry.root}/{entry.path} arrived with content hash "
                            f"{content_hash(data)}, but the split manifest says {entry.sha256} "
                            "(corrupted in transit?)")
        return data
