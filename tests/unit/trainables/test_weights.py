"""Pretrained weights through torchvision's real loading path and cache, offline."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision
from torchvision.models import MobileNet_V2_Weights

from tests.conftest import HYMENOPTERA
from trainables.archs import ARCHS
from trainables.data.images import decode_pil
from trainables.errors import UserError, WeightsError
from trainables.weights import bundled_files, cache_dir, ensure_available, import_file, main


@pytest.mark.parametrize(("photo", "expected"), [
    ("val/ants/1124525276_816a07c17f.jpg", "ant"),
    ("val/bees/10870992_eebeeb3a12.jpg", "bee"),
])
def test_real_mobilenet_weights_classify_known_photo(torch_home, photo, expected):
    """The pip package's file, imported into $TORCH_HOME/hub/checkpoints, is what torchvision's
    own `weights=` enum loads -- no network -- and it recognises an ant and a bee."""
    assert (cache_dir() / "mobilenet_v2-b0353104.pth").is_file()
    assert str(cache_dir()).startswith(str(torch_home))
    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2(weights=weights).eval()
    x = weights.transforms()(decode_pil(HYMENOPTERA / photo)).unsqueeze(0)
    with torch.inference_mode():
        probs = model(x).softmax(1)[0]
    top = int(probs.argmax())
    assert weights.meta["categories"][top] == expected
    assert float(probs[top]) > 0.5


def test_missing_weights_error_names_file_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    arch = ARCHS["resnet18"]
    with pytest.raises(WeightsError) as info:
        ensure_available(arch)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in message


def test_import_rejects_unknown_name(tmp_path, torch_home):
    bogus = tmp_path / "my_model.pth"
    bogus.write_bytes(b"x")
    with pytest.raises(UserError, match="not a weights file torchvision expects"):
        import_file(bogus)


def test_import_rejects_hash_mismatch(tmp_path, torch_home):
    source = bundled_files()[0]
    corrupt = tmp_path / source.name
    data = bytearray(source.read_bytes())
    data[1000] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        import_file(corrupt)


def test_import_cli_copies_into_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    source = bundled_files()[0]
    local = tmp_path / source.name
    shutil.copyfile(source, local)
    assert main(["import", str(local)]) == 0
    assert (tmp_path / "home" / "hub" / "checkpoints" / source.name).is_file()
    assert main(["import", str(tmp_path / "nope.pth")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_timm_weights_name_the_file_and_the_hugging_face_cache(tmp_path, monkeypatch):
    """Offline (HF_HUB_OFFLINE=1) and not cached: the error names timm's repository file, where
    timm's Hugging Face cache expects it, and how to fill it."""
    import importlib

    import huggingface_hub.constants

    from trainables.archs import resolve

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    importlib.reload(huggingface_hub.constants)
    try:
        with pytest.raises(WeightsError) as info:
            ensure_available(resolve("timm/convnext_atto"))
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)
    message = str(info.value)
    assert "timm/convnext_atto.d2_in1k: model.safetensors" in message
    assert str(tmp_path / "hf" / "hub" / "models--timm--convnext_atto.d2_in1k") in message
    assert "hf download timm/convnext_atto.d2_in1k" in message


def test_missing_torchvision_weights_of_a_derived_model_name_the_file(torch_home):
    from trainables.archs import resolve

    with pytest.raises(WeightsError, match="convnext_tiny-983f1562.pth"):
        ensure_available(resolve("convnext_tiny"), check_download=False)


def test_status_lists_models_of_both_libraries(torch_home, capsys):
    assert main(["status", "mobilenet_v2", "convnext_tiny", "timm/convnext_atto", "nope"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "torchvision" in rows["mobilenet_v2"] and rows["mobilenet_v2"].endswith("cached")
    assert "convnext_tiny-983f1562.pth" in rows["convnext_tiny"]
    assert rows["convnext_tiny"].endswith("missing")
    assert "timm (Hugging Face)" in rows["timm/convnext_atto"]
    assert rows["nope"].endswith("error")


def test_import_accepts_any_torchvision_classifiers_file_name_but_checks_its_hash(tmp_path, torch_home):
    fake = tmp_path / "convnext_tiny-983f1562.pth"
    fake.write_bytes(b"not the weights")
    with pytest.raises(UserError, match="sha256"):
        import_file(fake)
