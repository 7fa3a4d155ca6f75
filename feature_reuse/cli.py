"""`feature-reuse sweep|report|train|weights|predict|export|results ...`: the same CLIs as
`python -m sweep.run`, `python -m analysis.report`, `python -m trainables.train`,
`python -m trainables.weights`, `python -m feature_reuse.predict`, `python -m feature_reuse.export`
and `python -m feature_reuse.results`.

Each subcommand hands the rest of the command line to that module's own `main`, so options,
`--help` and exit statuses are exactly the module's.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("sweep.run", "the study's grid on Ray Tune (python -m sweep.run)"),
    "report": ("analysis.report", "tables, figures, claims and Grad-CAM (python -m analysis.report)"),
    "train": ("trainables.train", "one trial without Ray (python -m trainables.train)"),
    "weights": ("trainables.weights", "the pretrained-weights cache (python -m trainables.weights)"),
    "predict": ("feature_reuse.predict", "classify images with a kept model (docs/predict.md)"),
    "export": ("feature_reuse.export", "a kept model as TorchScript or ONNX (docs/predict.md)"),
    "results": ("feature_reuse.results",
                "each results table's current rows as one Parquet file (docs/results.md)"),
}


def usage() -> str:
    lines = ["usage: feature-reuse {" + ",".join(COMMANDS) + "} [options]", "", "commands:"]
    lines += [f"  {name:8s} {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "feature-reuse COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    argv, sys.argv = sys.argv, [f"feature-reuse {name}", *rest]  # the command's prog name
    try:
        return int(module.main(rest) or 0)
    finally:
        sys.argv = argv  # called in-process (tests, notebooks): later parsers keep their own


if __name__ == "__main__":
    sys.exit(main())
