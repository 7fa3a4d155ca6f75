"""The report on real results: smoke trials trained here (run_trial) in an experiment folder
prepared by the sweep's own preflight; the answer box, Table II, the figures, Grad-CAM found
through the recorded data folders, the --ood bug, provenance, a custom template, a real
headless browser; and, slow, a real smoke sweep followed by `python -m analysis.report`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import main
from analysis.verdicts import VERDICTS
from tests.conftest import PROJECT_ROOT, write_image
from tests.synthetic import write_synthetic_trial
from trainables.presets import PRESETS
from trainables.results.tables import read_table

COLORS = {"a": (200, 40, 40), "b": (40, 40, 200)}
IMG = 'src="data:image/png;base64,'


def _folder(root: Path, per_class: int, seed0: int) -> Path:
    for ci, (cls, color) in enumerate(COLORS.items()):
        for i in range(per_class):
            write_image(root / cls / f"img_{i:03d}.jpg", color, seed=seed0 + 100 * ci + i)
    return root


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, torch_home):
    """mobilenet_v2 x 3 regimes x 2 seeds at train size "all" plus fine-tune and scratch at 3
    images per class, smoke preset, a real OOD folder, models kept; the experiment folder is
    prepared by the sweep's preflight (manifest.json, data_roots.json); plus one failed trial."""
    from sweep.grid import GridSpec
    from sweep.layout import Experiment
    from sweep.plan import DataChoice
    from sweep.preflight import run_preflight
    from trainables.train import run_trial

    base = tmp_path_factory.mktemp("report")
    pool = _folder(base / "pool", 10, 0)
    ood = _folder(base / "ood", 4, 1000)
    spec = GridSpec(PRESETS["smoke"], archs=("mobilenet_v2",), seeds=2, train_sizes=("3", "all"))
    experiment = Experiment.at(str(base), "exp")
    ready = run_preflight(spec, experiment, str(base), DataChoice(str(pool), str(ood)))
    ready.release()
    results = experiment.results
    for point in ready.todo:
        c = point.config
        if c.train_size == "3" and c.regime == "feature_extract":
            continue
        run_trial(c, ready.manifest, ready.roots, results, keep_model=True)
    write_synthetic_trial(results, "mobilenet_v2", "finetune", 7, status="failed",
                          error="RuntimeError: injected failure for the report test")
    return base / "exp", pool, ood


def test_report_on_real_smoke_trials(smoke_results, capsys):
    exp, pool, ood = smoke_results
    results = exp / "results"
    assert main(["--results", str(results), "--data", str(pool), "--ood", str(ood), "--gradcam-n", "2"]) == 0
    out = capsys.readouterr().out
    report = exp / "report"  # the default: <results>/../report
    for name in ("report.html", "table2.md", "table2.csv", "table2.tex", "paired.csv", "fig2.png",
                 "fig2.pdf", "learning_curves.png", "gradcam_mobilenet_v2.png"):
        assert (report / name).stat().st_size > 100, name
    assert not (report / "params.png").exists()  # one architecture: a line of text instead
    # the console answers first (one plain sentence, then the box), then prints Table II
    plain = " ".join(out.split("\n\n")[0].split())
    assert plain.startswith("On your 4 test images, pretrained mobilenet_v2 (") and "from scratch by" in plain
    assert "ANSWER (mobilenet_v2; 2 seeds; train sizes 3, all)" in out
    assert out.index("On your") < out.index("ANSWER") < out.index("Best on validation") \
        < out.index("Transfer − scratch") < out.index("Claims")
    table = (report / "table2.md").read_text()
    assert table.strip() in out and out.index("ANSWER") < out.index("Table II")
    header = table.splitlines()[0]
    assert header == ("| Architecture | Fine-tune (val) | Feature extraction (val) | From scratch (val) | "
                      "OOD (real) with transfer | OOD (real) without transfer |")
    assert "Means and 95% intervals" in table  # the second table, not packed into Table II's cells
    assert str(report / "report.html") in out and "gradcam_mobilenet_v2.png" in out
    assert "params: not drawn" in out and "--archs mobilenet_v2" in out

    # numbers agree with the Parquet results they come from
    trials = read_table(str(results), "trials").to_pandas()
    ok = trials[(trials["status"] == "ok") & (trials["train_size"] == "all")]
    csv = pd.read_csv(report / "table2.csv").set_index("regime")
    for regime, group in ok.groupby("regime"):
        assert csv.loc[regime, "n"] == 2
        assert csv.loc[regime, "best_val_acc_mean"] == pytest.approx(group["best_val_acc"].mean())
        assert csv.loc[regime, "ood_acc_mean"] == pytest.approx(group["ood_acc"].mean())
        assert csv.loc[regime, "trainable_params"] == group["trainable_params"].iloc[0]
        assert 0.0 <= csv.loc[regime, "test_acc_lo"] < csv.loc[regime, "test_acc_hi"] <= 1.0  # never 0-wide
    epochs = read_table(str(results), "epochs").to_pandas()
    final = epochs[(epochs["epoch"] == 2) & (epochs["train_size"] == "all")]  # smoke: the plateau is epoch 2
    for regime in ("finetune", "scratch"):
        vals = final.loc[final["regime"] == regime, "val_acc"]
        assert (csv.loc[regime, "band_lo"], csv.loc[regime, "band_hi"]) == (vals.min(), vals.max())
    paired = pd.read_csv(report / "paired.csv", dtype={"train_size": str})
    assert set(paired["split"]) == {"test", "ood"} and (paired["images"] > 0).all()
    assert (paired["seeds"] == 2).all() and (paired["diff_lo"] < paired["diff_hi"]).all()
    assert ((paired["p_value"] < 0.05) == ((paired["diff_lo"] > 0) | (paired["diff_hi"] < 0))).all()
    assert set(paired["train_size"]) == {"3", "all"}  # transfer vs scratch at every train size

    html = (report / "report.html").read_text()
    assert "<link" not in html and not re.search(r"src=\"(?!data:)", html)  # self-contained
    assert html.count(IMG) == 3  # fig2, learning curves, Grad-CAM
    assert 'id="params-missing"' in html and "<code>--archs mobilenet_v2 resnet18" in html
    # the answer box comes first: before Table II and the figures
    assert html.index('id="answer"') < html.index('id="table2"') < html.index('id="fig2"')
    answer = html[html.index('id="answer"'):html.index("</section>")]
    assert "Best on validation" in answer and "3/class" in answer and "Holm" in answer
    assert answer.index('id="plain"') < answer.index("Best on validation")
    assert "fixed in advance" in answer and "conditional on the one train/val/test split" in answer
    verdicts = re.findall(r'<span class="verdict [a-z]+">([^<]+)</span>', answer)
    listed = answer[answer.index('class="verdicts"'):]
    assert len(verdicts) == listed.count("<li>") and len(verdicts) >= 6 and set(verdicts) <= set(VERDICTS)
    assert "injected failure for the report test" in html  # failed trials listed
    assert "OOD (real)" in html and "synthetic" not in html
    assert "Caveat" not in html  # classes a/b from a user's folder: no ImageNet caveat
    # provenance: code version, split hash, libraries, device, deviations from the study
    prov = html[html.index('id="provenance"'):]
    row = trials[trials["status"] == "ok"].iloc[0]
    for value in (row["code_version"], row["split_manifest_hash"], "torchvision"):
        assert value in prov, value
    assert row["device"].split(" (")[0] in prov
    assert "<li>epochs 30 -&gt; 2</li>" in prov and "architectures outside the study: mobilenet_v2" in prov
    assert "seeds: 2 per configuration" in prov and "train sizes 3 per class besides all" in prov


def test_the_ood_folder_given_stays_in_the_reproduce_command(smoke_results, tmp_path, capsys):
    """Bug: build() overwrote the --ood argument with the OOD label ("OOD (real)")."""
    exp, pool, ood = smoke_results
    assert main(["--results", str(exp / "results"), "--data", str(pool), "--ood", str(ood),
                 "--gradcam-n", "1", "--out", str(tmp_path / "r")]) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    command = re.search(r"<code>(python -m analysis.gradcam [^<]*)</code>", html).group(1)
    assert f"--data {pool}" in command and f"--ood {ood}" in command
    assert "OOD (" not in command
    assert "Images from --data and --ood" in html


def test_report_finds_the_images_the_sweep_recorded(smoke_results, tmp_path, capsys):
    exp, pool, _ = smoke_results
    recorded = json.loads((exp / "data_roots.json").read_text())
    assert recorded["data"] == str(pool.resolve()) and recorded["embedded"] is False
    assert main(["--results", str(exp / "results"), "--out", str(tmp_path / "r"), "--gradcam-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM (mobilenet_v2 finetune" in out and "skipped" not in out
    html = (tmp_path / "r" / "report.html").read_text()
    assert f"Images from recorded by the sweep in {exp / 'data_roots.json'}" in html
    command = re.search(r"<code>(python -m analysis.gradcam [^<]*)</code>", html).group(1)
    assert "--data" not in command  # the gradcam CLI finds them the same way


@pytest.mark.parametrize("case", ["moved", "absent"])
def test_report_says_why_it_cannot_find_the_images(smoke_results, tmp_path, case, capsys):
    exp, _, _ = smoke_results
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy, ignore=shutil.ignore_patterns("report"))
    if case == "moved":
        roots = json.loads((copy / "data_roots.json").read_text())
        roots["data"] = str(tmp_path / "gone")
        (copy / "data_roots.json").write_text(json.dumps(roots))
        why = f"the sweep recorded the data folder {tmp_path / 'gone'}"
    else:
        (copy / "data_roots.json").unlink()
        why = "no data_roots.json beside"
    assert main(["--results", str(copy / "results")]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM skipped" in out and why in out and "pass --data" in out
    assert not list((copy / "report").glob("gradcam_*.png"))
    assert why in (copy / "report" / "report.html").read_text()


def test_gradcam_layer_option_is_named_in_the_report(smoke_results, tmp_path, capsys):
    exp, _, _ = smoke_results
    assert main(["--results", str(exp / "results"), "--out", str(tmp_path / "r"), "--gradcam-n", "1",
                 "--gradcam-layer", "mobilenet_v2=features.14"]) == 0
    out = capsys.readouterr().out
    assert "layer features.14" in out
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<code>features.14</code> (chosen with --gradcam-layer)" in html and "--layer features.14" in html
    assert main(["--results", str(exp / "results"), "--out", str(tmp_path / "r2"), "--gradcam-n", "1",
                 "--gradcam-layer", "layer4"]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM for mobilenet_v2 skipped" in out and "'layer4': no such module" in out


def test_custom_template_restyles_the_report(smoke_results, tmp_path, capsys):
    exp, _, _ = smoke_results
    mine = tmp_path / "mine.html.j2"
    mine.write_text('{% extends "report.html.j2" %}\n{% block style %}{{ super() }}\n'
                    "body{background:#101010;color:#eee}{% endblock %}\n"
                    "{% block title %}My lab's report{% endblock %}\n")
    assert main(["--results", str(exp / "results"), "--out", str(tmp_path / "r"), "--no-gradcam",
                 "--template", str(mine)]) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<title>My lab's report</title>" in html and "background:#101010" in html
    assert 'id="answer"' in html and 'id="table2"' in html
    assert main(["--results", str(exp / "results"), "--template", str(tmp_path / "nope.j2")]) == 2
    assert "--template" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var out = {images: [], ids: {}};
  document.querySelectorAll("img").forEach(function (img) {
    var r = img.getBoundingClientRect();
    out.images.push([img.alt, img.complete, img.naturalWidth, Math.round(r.width), Math.round(r.height)]);
  });
  ["answer", "table2", "fig2", "learning_curves", "params-missing", "gradcam", "provenance"].forEach(
    function (id) { var e = document.getElementById(id);
      out.ids[id] = e ? Math.round(e.getBoundingClientRect().height) : -1; });
  out.tables = document.querySelectorAll("table").length;
  out.answerTop = Math.round(document.getElementById("answer").getBoundingClientRect().top);
  var pre = document.createElement("pre"); pre.id = "browser-check";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium on PATH: install Debian's "
                    "`chromium` package (apt-get install -y chromium; .ci/run does) to run this test")
def test_report_renders_in_a_real_headless_browser(smoke_results, tmp_path, capsys):
    """Chromium loads report.html: every figure decodes and has a size on the page, the answer
    box is at the top, the tables and sections are laid out; a screenshot is taken."""
    exp, pool, ood = smoke_results
    out_dir = tmp_path / "r"
    assert main(["--results", str(exp / "results"), "--out", str(out_dir), "--gradcam-n", "2"]) == 0
    html = (out_dir / "report.html").read_text()
    probe = out_dir / "probe.html"
    probe.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(browser + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(check["images"]) == 3  # fig2, learning curves, Grad-CAM
    for alt, complete, natural, width, height in check["images"]:
        assert complete and natural > 200 and width > 200 and height > 100, alt
    assert all(h > 0 for h in check["ids"].values()), check["ids"]
    assert check["tables"] >= 5 and check["answerTop"] < 300
    shot = out_dir / "screenshot.png"
    run = subprocess.run(browser + ["--window-size=1280,2400", f"--screenshot={shot}",
                                    (out_dir / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 20_000, run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is None or len(colours) > 50  # not a blank page


@pytest.mark.slow
def test_report_after_a_real_smoke_sweep(tmp_path, torch_home):
    """The sweep CLI on the embedded demo set, then the report with default --out."""
    storage = tmp_path / "runs"
    sweep = subprocess.run(
        [sys.executable, "-m", "sweep.run", "--preset", "smoke", "--storage", str(storage), "--name", "s",
         "--archs", "mobilenet_v2", "--regimes", "finetune", "scratch", "--seeds", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    results = storage / "s" / "results"
    report = subprocess.run([sys.executable, "-m", "analysis.report", "--results", str(results),
                             "--gradcam-n", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert report.returncode == 0, report.stderr
    out_dir = storage / "s" / "report"
    assert report.stdout.startswith("On your ")
    assert "ANSWER (mobilenet_v2; 1 seed; train size all)" in report.stdout
    assert "| mobilenet_v2 |" in report.stdout and "OOD (synthetic shift)" in report.stdout
    assert "learning_curves: not drawn" in report.stdout and "--train-sizes 10 all" in report.stdout
    html = (out_dir / "report.html").read_text()
    assert "Caveat" in html and "ImageNet" in html  # the embedded ants/bees set
    assert "data: the embedded ants-vs-bees photos" in html  # a difference from the study
    assert (out_dir / "gradcam_mobilenet_v2.png").stat().st_size > 10_000  # models kept by default
    csv = pd.read_csv(out_dir / "table2.csv")
    assert sorted(csv["regime"]) == ["finetune", "scratch"] and (csv["n"] == 1).all()
    exp = storage / "s"
    assert json.loads((exp / "manifest.json").read_text())["layout"] == "embedded-demo"
    assert json.loads((exp / "data_roots.json").read_text())["embedded"] is True


@pytest.mark.parametrize("case", ["scratch-only", "one-seed-no-ood", "no-all-size"])
def test_report_on_sparse_results(tmp_path, case, capsys):
    """Odd but valid result sets still give a full report, with "not testable" where it must."""
    results = tmp_path / "results"
    if case == "scratch-only":
        for seed in (0, 1):
            write_synthetic_trial(results, "resnet18", "scratch", seed, val=[0.5, 0.6])
    elif case == "one-seed-no-ood":
        write_synthetic_trial(results, "vgg11_bn", "finetune", 0, ood_kind="none")
        write_synthetic_trial(results, "vgg11_bn", "feature_extract", 0, ood_kind="none")
    else:
        for size, per_class in (("5", 5.0), ("20", 20.0)):
            for regime in ("finetune", "scratch"):
                write_synthetic_trial(results, "mobilenet_v2", regime, 0, train_size=size,
                                      per_class=per_class, test=[True, False, True, True])
    assert main(["--results", str(results)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    html = (tmp_path / "report" / "report.html").read_text()
    assert "ANSWER" in out.split("\n\n")[1 if out.startswith(("On your", "Transfer against")) else 0]
    assert 'id="answer"' in html
    assert "not testable" in html and "No Grad-CAM figure" in html
    assert html.count(IMG) == (2 if case == "no-all-size" else 1)  # fig2 (+ learning curves)
    if case == "one-seed-no-ood":
        headlines, table2 = out.split("Claims (")[0], out.split("Table II")[1].split("report:")[0]
        assert "no per-image predictions, so no interval" in headlines and "OOD" not in headlines
        assert "OOD" not in table2
        assert "(1 seed)" in out
    if case == "scratch-only":
        assert "Transfer − scratch: not testable" in out
    if case == "no-all-size":
        assert "Train size 20." in out  # the largest size stands in for "all"
        assert "5/class" in out and "20/class" in out


def test_installed_package_carries_the_template(tmp_path):
    """A wheel built from the project holds analysis/templates/report.html.j2 (package data), so
    an installed (non-editable) package renders the report too."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, src / name)
    for package in ("analysis", "sweep", "trainables"):
        shutil.copytree(PROJECT_ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", str(src), "-w", str(tmp_path / "wheel")], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    import zipfile

    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    assert "analysis/templates/report.html.j2" in zipfile.ZipFile(wheel).namelist()
