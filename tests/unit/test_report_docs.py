"""docs/report.md describes what the code has: every report and Grad-CAM option, every template
block, every default Grad-CAM layer."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "report.md"
TEMPLATE = PROJECT_ROOT / "analysis" / "templates" / "report.html.j2"


def _options(parser) -> set[str]:
    options = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    options.discard("--help")
    return options


@pytest.mark.parametrize("module", ["analysis.report", "analysis.gradcam"])
def test_every_option_is_documented(module):
    import importlib

    parser = importlib.import_module(module).build_parser()
    text = DOC.read_text() + (PROJECT_ROOT / "docs" / "analysis.md").read_text()
    missing = sorted(o for o in _options(parser) if f"`{o}" not in text and f"[{o}" not in text)
    assert missing == [], f"options of {module} missing from docs/report.md and docs/analysis.md"


def test_every_template_block_is_documented():
    blocks = re.findall(r"{% block (\w+) %}", TEMPLATE.read_text())
    listed = re.search(r"^Blocks: (.*?)\. The context", DOC.read_text(), re.M | re.S).group(1)
    assert sorted(blocks) == sorted(re.findall(r"`(\w+)`", listed))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # inception_v3's init_weights notice
def test_default_gradcam_layers_are_documented():
    import torch
    import torchvision.models as tvm

    from analysis.cam import default_layer, layer_name
    from trainables.archs import ARCHS

    text = DOC.read_text()
    for name, arch in ARCHS.items():
        with torch.device("meta"):  # module structure only: no weights allocated or initialised
            model = tvm.get_model(name, weights=None, **arch.build_kwargs)
        path = layer_name(model, default_layer(model, name))
        assert f"| {name} | `{path}` |" in text, name
