"""Split-folder names as labelling tools and dataset sites spell them. No torch import.

`train/ val/ test/` is this project's own spelling; Roboflow exports `train/ valid/ test/`, others
`Train/ Val/ Test/`, `training/ validation/ testing/`, `train_set/`, `dev/` ... All name the same
three splits. A pool (one folder per class) whose class folders carry such names is almost
always a pre-split folder read the wrong way, and is refused (trainables/folders.py).
"""

from __future__ import annotations

import re

SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training", "trn", "trainset", "trainingset"),
    "val": ("val", "valid", "validation", "validate", "dev", "valset", "validset",
            "validationset"),
    "test": ("test", "testing", "tst", "testset", "testingset"),
}
FILLER_WORDS = frozenset({"set", "data", "dataset", "images", "image", "imgs", "img", "split",
                          "seg", "photos", "files", "folder"})
"""Words around a split name that do not change it: train_set, seg_train, Test Images."""
_ALIAS_TO_SPLIT = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}


def split_of(name: str) -> str | None:
    """"train", "val" or "test" when a folder name spells a split, else None."""
    words = [w for w in re.split(r"[\s_\-.]+", name.strip().lower()) if w]
    core = [w for w in words if w not in FILLER_WORDS]
    if len(core) != 1:
        return None
    return _ALIAS_TO_SPLIT.get(core[0])


def spellings() -> str:
    """The accepted spellings, for error messages."""
    return "; ".join(f"{split}: {', '.join(aliases)}" for split, aliases in SPLIT_ALIASES.items()) + \
        " (any case; words such as _set or _images around them are ignored)"
