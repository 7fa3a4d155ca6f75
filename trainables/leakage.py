"""Byte-identical images within a run's folders: recorded, warned about, refused when they leak.

The manifest holds each file's content hash, so duplicates are found by hash alone. What they do:
- the same image in train and in an evaluation split (val, test, OOD): the model is scored on an
  image it trained on; the run measures memorisation. Refused unless the user opts in
  (`--allow-duplicates`);
- the same image under two classes: contradictory labels (a warning);
- copies within one class of a pool: one copy is used, the others are set aside (split "unused"
  in the record), so that no copy can straddle the 60/20/20 split;
- anything else (e.g. copies inside one split): a warning.
Every group is recorded in the manifest's `duplicates` (absent when there are none, so a clean
folder's manifest and hash do not change).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from trainables.manifest import EVAL_SPLITS, Entry

UNUSED = "unused"
"""Split recorded for a pool's extra copies of an image its class already has."""
SHOWN = 5
"""Examples shown per kind of problem; the manifest records every one."""


def _member(entry: Entry) -> dict[str, str]:
    return {"root": entry.root, "path": entry.path, "label": entry.label, "split": entry.split}


def find_duplicates(entries: Iterable[Entry]) -> list[dict]:
    """Groups of two or more files with the same content: [{"sha256", "files": [...]}, ...]."""
    by_hash: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_hash[entry.sha256].append(entry)
    groups = []
    for digest, members in sorted(by_hash.items()):
        if len(members) > 1:
            files = sorted((_member(e) for e in members),
                           key=lambda m: (m["split"], m["root"], m["path"]))
            groups.append({"sha256": digest, "files": files})
    return groups


def _splits(group: dict) -> set[str]:
    return {f["split"] for f in group["files"]} - {UNUSED}


def is_leak(group: dict) -> bool:
    splits = _splits(group)
    return "train" in splits and bool(splits & set(EVAL_SPLITS))


def _show(group: dict) -> str:
    return " = ".join(f"{f['path']} ({f['split']}, {f['label']!r})" for f in group["files"][:3])


def _examples(groups: list[dict]) -> str:
    shown = "; ".join(_show(g) for g in groups[:SHOWN])
    more = f"; ... and {len(groups) - SHOWN} more" if len(groups) > SHOWN else ""
    return shown + more


def warnings(groups: list[dict], where: str) -> list[str]:
    """One line per kind of duplicate (leaks are the caller's refusal, or a warning if allowed)."""
    out = []
    leaks = [g for g in groups if is_leak(g)]
    if leaks:
        out.append(f"{where}: {len(leaks)} image(s) are both in train and in an evaluation split "
                   f"(byte-identical files): {_examples(leaks)}")
    two_classes = [g for g in groups if len({f["label"] for f in g["files"]}) > 1]
    if two_classes:
        out.append(f"{where}: {len(two_classes)} image(s) are in two or more classes "
                   f"(contradictory labels): {_examples(two_classes)}")
    unused = [g for g in groups if any(f["split"] == UNUSED for f in g["files"])]
    if unused:
        n = sum(1 for g in unused for f in g["files"] if f["split"] == UNUSED)
        out.append(f"{where}: {n} extra copy(ies) of images already in their class were set "
                   f"aside (one copy of each is used, so no copy straddles the split): "
                   f"{_examples(unused)}")
    rest = [g for g in groups if g not in leaks and g not in two_classes and g not in unused]
    if rest:
        out.append(f"{where}: {len(rest)} image(s) have byte-identical copies: {_examples(rest)}")
    return out


def refusal(groups: list[dict], where: str, context: str = "") -> str | None:
    """The error for leaking duplicates (None when there are none)."""
    leaks = [g for g in groups if is_leak(g)]
    if not leaks:
        return None
    return (f"{where}: {len(leaks)} image(s) are both in train and in val, test or OOD "
            f"(byte-identical files){context}: the model would be scored on images it trained "
            f"on. {_examples(leaks)}. Fix: remove the copies from one side, or pass "
            "--allow-duplicates to run anyway (they are recorded in the split manifest and "
            "shown in the report)")
