"""A kept model as one file that runs without this package: TorchScript or ONNX.

    feature-reuse export --experiment runs/demo --format torchscript --out model.ts
    feature-reuse export --experiment runs/demo --model 0b8fcb594117a265 --format onnx --out model.onnx

The file takes a float32 image batch (N, 3, H, W) with values in [0, 1] (RGB, a uint8 image / 255)
at the model's crop size (H = W = the test crop: `TrialConfig.eval_transform("test")`, which for
the linear probe is its validation transform), normalises it with the model's own
mean and std inside, and returns the logits (N, classes) of the eval-mode model (Inception: the
main head; the auxiliary head is a training device). Softmax gives the probabilities that
`feature-reuse predict` prints. Resizing and cropping stay outside: Resize(test resize) (the
shorter side, with the config's interpolation) then CenterCrop(test crop), as predict does. The
file carries that recipe and the class names as metadata: TorchScript in the extra file
`feature_reuse.json` (torch.jit.load(path, _extra_files={"feature_reuse.json": ""})), ONNX in its
metadata_props. Before returning, the written file is loaded back and its logits compared with
the kept model's on a batch (the difference is printed; torch 2.14 calls TorchScript deprecated in
favour of torch.export, and it still loads everywhere torch does). --format onnx needs the `onnx` extra:
pip install 'feature-reuse[onnx]' (onnx, onnxscript; onnxruntime for that check).
Exit status: 0 ok, 2 bad options or model, 1 a failing disk or a check that failed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from typing import Any

import torch
from torch import nn

from trainables.errors import UserError
from trainables.model_file import BEST, KeptModel, choose, read_model_file
from trainables.results import storage

FORMATS: tuple[str, ...] = ("torchscript", "onnx")
METADATA_FILE = "feature_reuse.json"
CHECK_TOLERANCE = 1e-4
"""Largest |logit difference| the written file may show against the kept model, relative to the
largest |logit| (at least 1). TorchScript reproduces the logits bit for bit; ONNX Runtime's own
convolution kernels differ by float32 rounding, which a linear probe's regression amplifies (its
weights divide by each feature's spread: logits of ~40 differ by ~1e-3)."""
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
"""torch 2.14 warns that TorchScript is deprecated in favour of torch.export; it still works."""


class NormalizedClassifier(nn.Module):
    """float (N, 3, H, W) in [0, 1] -> logits: (x - mean) / std, then the model (eval mode)."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def metadata(kept: KeptModel) -> dict[str, Any]:
    """What a user of the file needs besides the weights."""
    c = kept.config
    resize, crop = c.eval_transform("test")  # the linear probe: its validation transform
    return {"classes": kept.classes, "input": {"shape": ["N", 3, crop, crop],
                                                "dtype": "float32", "range": [0.0, 1.0],
                                                "channels": "RGB"},
            "preprocess": {"resize_shorter_side": resize, "center_crop": crop,
                           "interpolation": c.interpolation},
            "normalisation_inside": {"mean": list(c.mean), "std": list(c.std)},
            "output": "logits (softmax gives probabilities)", "arch": c.arch, "regime": c.regime,
            "trial_id": kept.trial_id, "code_version": kept.code_version}


def example_batch(kept: KeptModel, n: int = 2, seed: int = 0) -> torch.Tensor:
    crop = kept.config.eval_transform("test")[1]
    return torch.rand(n, 3, crop, crop, generator=torch.Generator().manual_seed(seed))


def torchscript_bytes(module: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=FutureWarning)
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, buf, _extra_files={METADATA_FILE: json.dumps(meta)})
    return buf.getvalue()


def onnx_bytes(module: nn.Module, example: torch.Tensor, meta: dict[str, Any]) -> bytes:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as exc:
        raise UserError(f"--format onnx needs the onnx and onnxscript packages ({exc}). Fix: pip "
                        "install 'feature-reuse[onnx]', or use --format torchscript") from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(module, (example,), input_names=["image"], output_names=["logits"],
                                dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return onnx.ModelProto.SerializeToString(proto)


def run_file(fmt: str, data: bytes, x: torch.Tensor) -> torch.Tensor | None:
    """Logits of the written file on `x`; None for ONNX without onnxruntime (not checked)."""
    if fmt == "torchscript":
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=FutureWarning)
            return torch.jit.load(io.BytesIO(data)).eval()(x)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])


WRITERS = {"torchscript": torchscript_bytes, "onnx": onnx_bytes}


def export(kept: KeptModel, fmt: str) -> tuple[bytes, float | None]:
    """(the file's bytes, max |logit difference| against the kept model on a check batch of
    another batch size than traced, relative to the largest |logit| (at least 1); None when
    ONNX could not be run here)."""
    if fmt not in WRITERS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    c = kept.config
    module = NormalizedClassifier(kept.model, c.mean, c.std).eval()
    data = WRITERS[fmt](module, example_batch(kept), metadata(kept))
    check = example_batch(kept, n=3, seed=1)
    with torch.no_grad():
        want = module(check)
    got = run_file(fmt, data, check)
    scale = max(1.0, float(want.abs().max()))
    return data, None if got is None else float((got - want).abs().max()) / scale


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feature-reuse export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=None,
                   help="the sweep's folder (<storage>/<name>, e.g. runs/demo) or a results folder")
    p.add_argument("--model", default=BEST, help="best (default), a trial id, or a model file (.pt)")
    p.add_argument("--format", required=True, choices=FORMATS, help="torchscript or onnx")
    p.add_argument("--out", required=True, help="the file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        storage.check_output_file("--out", args.out)
        choice = choose(args.experiment, args.model)
        kept = read_model_file(choice.path)
        if kept.note:
            print(f"note: {kept.note}", file=sys.stderr)
        data, diff = export(kept, args.format)
        if diff is not None and not diff <= CHECK_TOLERANCE:
            print(f"error: the exported file's logits differ from the kept model's by {diff:.3g} "
                  f"of their scale (more than {CHECK_TOLERANCE:g}); nothing written", file=sys.stderr)
            return 1
        storage.write_bytes_atomic(args.out, data)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {storage.os_error_message(exc, args.out)}", file=sys.stderr)
        return 1
    checked = ("not run here (no onnxruntime)" if diff is None
               else f"logits equal the kept model's to {diff:.2g} of the largest |logit|")
    c, tid = kept.config, kept.trial_id or (choice.row or {}).get("trial_id")
    resize, crop = c.eval_transform("test")
    print(f"{args.out}: {c.arch} {c.regime} (trial {tid}) as {args.format}; input "
          f"float32 (N, 3, {crop}, {crop}) in [0, 1], resized to {resize} "
          f"and center-cropped first; classes {', '.join(kept.classes)}; check: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
