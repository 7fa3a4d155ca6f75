"""User-facing errors: printed as one plain message by every CLI, never as a traceback; and the
CLIs' argument parser, whose unknown-option message names the option to use instead."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any


class UserError(Exception):
    """Bad input or options: the message names the file or option and the fix."""


class DataError(UserError):
    """Problems with the image folders (missing, unreadable, mismatched classes)."""


class WeightsError(UserError):
    """Pretrained weights are missing from torchvision's cache and cannot be downloaded."""


COMMAND_PREFIX = "feature-reuse "
"""How feature_reuse/cli.py names a subcommand in sys.argv[0] ("feature-reuse sweep")."""
SETTING_SYNONYMS = {"learning-rate": "lr", "batch": "batch_size", "step": "step_size"}
"""Other tools' names of a trial setting -> the setting."""


def command_prog(default: str) -> str:
    """`feature-reuse X` when run as that subcommand (feature_reuse/cli.py), else `default`."""
    return sys.argv[0] if sys.argv and sys.argv[0].startswith(COMMAND_PREFIX) else default


class CommandParser(argparse.ArgumentParser):
    """argparse's parser as every CLI here uses it: its prog is `feature-reuse X` when run as
    that subcommand, and an unknown option that names a trial setting (`--epochs 5`, what timm and
    torchvision's references take) answers with the `--set` that does it, exit 2.

    `settings`: the names `--set` takes (trainables.presets.FIELD_TYPES); `renames`: other tools'
    options -> this CLI's (`{"model": "--archs"}`: timm's --model)."""

    def __init__(self, *, prog: str, settings: Collection[str] = (),
                 renames: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(prog=command_prog(prog), **kwargs)
        self.settings = tuple(settings)
        self.renames = dict(renames or {})

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        tokens = list(sys.argv[1:] if args is None else args)
        unknown = [t for t in tokens if self.is_unknown(t)]  # before argparse's own errors
        if unknown:
            self.exit(2, f"error: {self.unknown_message(tokens[tokens.index(unknown[0]):])}\n")
        parsed, extra = self.parse_known_args(tokens, namespace)
        if extra:
            self.exit(2, f"error: {self.unknown_message(extra)}\n")
        return parsed

    def is_unknown(self, token: str) -> bool:
        """An option this parser has no name for (nor an abbreviation of one)."""
        if not token.startswith("--") or token == "--":
            return False
        name = token.split("=", 1)[0]
        return not any(s.startswith(name) for a in self._actions for s in a.option_strings)

    def unknown_message(self, extra: list[str]) -> str:
        """What to type instead of the first unknown option in `extra`."""
        options = [t for t in extra if t.startswith("--")]
        if not options:
            return (f"unrecognized arguments: {' '.join(extra)}. Fix: see "
                    f"{self.prog} --help")
        token = options[0]
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            after = extra[extra.index(token) + 1:]
            value = after[0] if after and not after[0].startswith("-") else "VALUE"
        setting = SETTING_SYNONYMS.get(name, name.replace("-", "_"))
        if setting in self.settings:
            return f"unknown option --{name}; did you mean --set {setting}={value}?"
        if name in self.renames:
            return f"unknown option --{name}; did you mean {self.renames[name]} {value}?"
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        close = difflib.get_close_matches(f"--{name}", known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f". Fix: see {self.prog} --help"
        return f"unknown option --{name}{hint}"
