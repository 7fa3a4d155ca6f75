"""The report's "Your model" box on kept_experiment: it names the file `feature-reuse predict`
loads, that trial's numbers, and a command and a Python snippet that both run."""

from __future__ import annotations

import contextlib
import io
import shlex

from analysis import your_model
from analysis.load import load_results
from analysis.report import build
from feature_reuse.cli import main as cli_main
from trainables.results import tables as results


def test_the_box_names_the_best_kept_model_and_its_commands_run(kept_experiment, tmp_path, capsys):
    root = str(kept_experiment.root / "results")
    box = your_model.build(load_results(root))
    best = min(kept_experiment.rows.values(), key=results.best_trial_key)
    assert box.trial_id == best["trial_id"] and box.file == f"{root}/{best['model_path']}"
    assert box.test_acc == best["test_acc"] and box.ood_acc == best["ood_acc"]
    assert box.predict == f"feature-reuse predict --experiment {kept_experiment.root} IMAGES_OR_FOLDER"

    report = build(root, str(tmp_path / "report"), with_gradcam=False)
    html = (tmp_path / "report" / "report.html").read_text()
    section = html[html.index('<section id="your-model">'):]
    section = section[:section.index("</section>")]
    assert box.file in section and box.predict in section and best["trial_id"] in section
    assert f"test {100 * best['test_acc']:.1f}%" in section
    assert html.index('id="answer"') < html.index('id="your-model"') < html.index('id="table2"')
    assert report.your_model == box

    argv = shlex.split(box.predict.replace("IMAGES_OR_FOLDER", str(kept_experiment.ood)))
    assert argv[0] == "feature-reuse" and cli_main(argv[1:]) == 0
    assert f"trial {box.trial_id}" in capsys.readouterr().err
    lines = box.snippet.splitlines()
    assert len(lines) == 5
    image = next(kept_experiment.ood.rglob("*.jpg"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(box.snippet.replace("photo.jpg", str(image)), {})
    assert printed.getvalue().startswith("['")


def test_no_box_without_a_kept_model(tmp_path):
    from tests.synthetic import write_synthetic_trial

    write_synthetic_trial(str(tmp_path / "results"), "mobilenet_v2", "finetune", 0)
    assert your_model.build(load_results(str(tmp_path / "results"), with_manifest=False)) is None
