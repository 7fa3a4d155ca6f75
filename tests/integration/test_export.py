"""feature-reuse export: the written file takes a [0, 1] float batch at the crop size, normalises
inside, and gives the kept model's logits (to 1e-5) in a process that never imports this
package; Inception exports its eval-mode main logits; ONNX where onnx/onnxruntime are installed."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import torch

from feature_reuse.export import METADATA_FILE, main
from feature_reuse.inference import Predictor, eval_transform
from tests.conftest import PROJECT_ROOT
from trainables.model_file import model_file_bytes, read_model_file
from trainables.models import build_model
from trainables.presets import PRESETS
from trainables.results import tables as results

TOL = 1e-5

LOAD_ALONE = """
import json, sys, torch
model_path, inputs_path, out_path = sys.argv[1:]
extra = {"feature_reuse.json": ""}
model = torch.jit.load(model_path, _extra_files=extra)
with torch.no_grad():
    logits = model(torch.load(inputs_path))
ours = sorted(m for m in sys.modules
              if m.split(".")[0] in ("trainables", "analysis", "sweep", "feature_reuse"))
torch.save({"logits": logits, "meta": json.loads(extra["feature_reuse.json"]), "ours": ours}, out_path)
"""


def _test_crops(kept_experiment, predictor: Predictor) -> torch.Tensor:
    """The trial's test images as the kept model sees them: uint8 eval crops."""
    from trainables.data.images import decode_pil

    rows = [r for r in results.read_table(str(kept_experiment.root / "results"), "predictions").to_pylist()
            if r["split"] == "test"]
    transform = eval_transform(predictor.kept.config)
    return torch.stack([transform(decode_pil(kept_experiment.pool / r["path"]))
                        for r in {r["path"]: r for r in rows}.values()])


def _load_alone(model_file, inputs: torch.Tensor, tmp_path) -> dict:
    """Run the exported file in a fresh interpreter that imports torch only."""
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-c", LOAD_ALONE, str(model_file), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=tmp_path, timeout=300,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
    return torch.load(tmp_path / "out.pt", weights_only=True)


def test_torchscript_reproduces_the_kept_models_logits_without_this_package(kept_experiment, tmp_path,
                                                                             capsys):
    files, crops, want = {}, {}, {}
    for regime, row in kept_experiment.rows.items():
        predictor = Predictor.load(str(kept_experiment.root / "results" / row["model_path"]))
        files[regime] = tmp_path / f"{regime}.ts"
        assert main(["--experiment", str(kept_experiment.root), "--model", row["trial_id"],
                     "--format", "torchscript", "--out", str(files[regime])]) == 0
        checked = re.search(r"logits equal the kept model's to (\S+) ", capsys.readouterr().out)
        assert float(checked.group(1)) < TOL
        crops[regime] = _test_crops(kept_experiment, predictor)
        want[regime] = predictor.logits(crops[regime])
    for regime, path in files.items():
        got = _load_alone(path, crops[regime].float() / 255, tmp_path)
        assert got["ours"] == []
        assert float((got["logits"] - want[regime]).abs().max()) < TOL
        config = read_model_file(str(kept_experiment.root / "results" /
                                     kept_experiment.rows[regime]["model_path"])).config
        meta = got["meta"]
        assert meta["classes"] == ["blue", "red"] and meta["regime"] == regime
        resize, crop = config.eval_transform("test")  # the probe's: the validation transform
        assert meta["input"]["shape"] == ["N", 3, crop, crop]
        assert meta["normalisation_inside"] == {"mean": list(config.mean), "std": list(config.std)}
        assert meta["preprocess"]["resize_shorter_side"] == resize


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notice
def test_inception_exports_its_eval_mode_main_logits(tmp_path, capsys):
    config = PRESETS["smoke"].trial("inception_v3", "finetune", 0)
    torch.manual_seed(0)
    model = build_model(config, 3, pretrained=False)  # random weights: no download
    source = tmp_path / "inception.pt"
    source.write_bytes(model_file_bytes("t" * 16, config, ["a", "b", "c"], model.state_dict()))
    out = tmp_path / "inception.ts"
    assert main(["--model", str(source), "--format", "torchscript", "--out", str(out)]) == 0
    x = torch.rand(2, 3, config.test_crop, config.test_crop, generator=torch.Generator().manual_seed(3))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (config.mean, config.std))
    with torch.no_grad():
        want = model.eval()((x - mean) / std)
        got = torch.jit.load(str(out))(x)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3)
    assert float((got - want).abs().max()) < TOL


HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))


@pytest.mark.skipif(not HAS_ONNX, reason="onnx export needs pip install 'feature-reuse[onnx]'")
def test_onnx_reproduces_the_kept_models_logits(kept_experiment, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    import onnx

    row = kept_experiment.rows["finetune"]
    predictor = Predictor.load(str(kept_experiment.root / "results" / row["model_path"]))
    out = tmp_path / "model.onnx"
    # a fresh process, as a user runs it: after a trial in this process, torch.export trips over
    # the TF32 flags trainables.device set (reading torch.backends.cudnn.allow_tf32 raises)
    subprocess.run([sys.executable, "-m", "feature_reuse.export", "--experiment", str(kept_experiment.root),
                    "--model", row["trial_id"], "--format", "onnx", "--out", str(out)],
                   check=True, timeout=600, cwd=PROJECT_ROOT)
    crops = _test_crops(kept_experiment, predictor)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": (crops.float() / 255).numpy()})[0]
    assert float((torch.from_numpy(got) - predictor.logits(crops)).abs().max()) < TOL
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["classes"] == ["blue", "red"]


@pytest.mark.skipif(HAS_ONNX, reason="onnx is installed here")
def test_onnx_without_its_packages_says_how_to_get_them(kept_experiment, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["--experiment", str(kept_experiment.root), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --format onnx needs the onnx and onnxscript packages")
    assert "pip install 'feature-reuse[onnx]'" in err and not out.exists()


def test_metadata_file_name_is_documented():
    assert METADATA_FILE in (PROJECT_ROOT / "docs" / "predict.md").read_text()
