"""What a sweep's trials will use, per architecture: printed by `--dry-run` before the grid.

For a model outside the registry it also says how its entry was derived from torchvision or timm
(head, Grad-CAM layer, normalisation layers, cached-feature path; `trainables.derived`).
"""

from __future__ import annotations

from collections.abc import Callable

from sweep.preflight import Ready
from trainables.archs import source_of


def _say(text: str = "") -> None:
    print(text, flush=True)


def print_settings(ready: Ready, say: Callable[[str], None] = _say) -> None:
    """Per architecture, the settings its trials use (sizes differ by architecture), and for a
    model outside the registry how its entry was derived from torchvision or timm."""
    seen: dict[str, object] = {}
    for p in ready.grid:
        seen.setdefault(p.config.arch, p.config)
    say("settings per architecture (all trials; full config: --dry-run rows' config in the results):")
    for arch, c in seen.items():
        source = source_of(arch)
        say(f"  {arch:14s} [{source}] epochs {c.epochs}, batch {c.batch_size}, lr {c.lr:g}, momentum "
            f"{c.momentum:g}, StepLR {c.step_size}/{c.gamma:g}; train RandomResizedCrop({c.train_crop}); "
            f"val Resize({c.val_resize})/CenterCrop({c.val_crop}); test Resize({c.test_resize})/"
            f"CenterCrop({c.test_crop}); OOD Resize({c.ood_resize})/CenterCrop({c.ood_crop}); "
            f"interpolation {c.interpolation}, mean {_triple(c.mean)}, std {_triple(c.std)}; "
            f"weights {c.weights or 'none'}; bn_mode {c.bn_mode}, backend {c.backend}, "
            f"select_on {c.select_on}")
        if source != "study":
            from trainables.archs import resolve

            for note in resolve(arch, c.weights).notes:
                say(f"      derived: {note}")


def _triple(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
