"""One results folder, one split: which split a folder already holds, for both CLIs' refusal.

Trials of different data pooled into one folder would make every band and verdict a mixture.
`manifest.json` says which split a folder holds; where it is gone (deleted by hand, never
copied with the results), the split hash every trial row carries says it instead, so deleting
the manifest never lets another split in. The sweep and `python -m trainables.train` ask the
same question here and word the refusal for their own options.
"""

from __future__ import annotations

from trainables import results
from trainables.manifest import Manifest
from trainables.storage import read_bytes


def other_split(manifest_file: str, results_root: str, now: str, fix: str) -> str | None:
    """The hash of the split a folder already holds when it is not `now`; None when it is `now`
    or nothing was recorded. A corrupt manifest raises UserError naming it with `fix`; storage
    errors from reading it propagate (the callers report storage problems their own way)."""
    data = read_bytes(manifest_file)
    if data is not None:
        old = Manifest.parse(data, manifest_file, fix).hash
        return None if old == now else old
    try:
        table = results.read_table(results_root, "trials", columns=["split_manifest_hash"])
    except Exception:  # unreadable results are named by the callers' own results checks
        return None
    hashes = sorted({h for h in table["split_manifest_hash"].to_pylist() if h})
    return hashes[0] if hashes and now not in hashes else None
