"""Which images a run uses: the user's folders, or the embedded default when none are given."""

from __future__ import annotations

from pathlib import Path

from trainables.embedded import demo_manifest
from trainables.errors import DataError
from trainables.folders import build_manifest, resolve_ood_root
from trainables.manifest import DataRoots, Manifest


def prepare_data(data: str | Path | None = None, ood: str | Path | None = None,
                 split_seed: int = 0, caps: dict[str, int] | None = None,
                 skip_bad: bool = False, allow_duplicates: bool = False
                 ) -> tuple[DataRoots, Manifest]:
    """The CLIs' entry point: no --data means the embedded demo set (with its shifted OOD).
    The manifest's `warnings` list what the scan left out or found suspicious."""
    if data is None:
        if ood is not None or caps:
            raise DataError("--ood and class caps need --data; the embedded default brings its "
                            "own pool and synthetic-shift OOD set")
        root, manifest = demo_manifest(skip_bad=skip_bad)
        return DataRoots(str(root)), manifest
    manifest = build_manifest(data, ood, split_seed=split_seed, caps=caps, skip_bad=skip_bad,
                              allow_duplicates=allow_duplicates)
    ood_root = resolve_ood_root(ood, manifest.classes) if ood is not None else None
    return DataRoots(str(Path(data).resolve()),
                     str(ood_root.resolve()) if ood_root else None), manifest
