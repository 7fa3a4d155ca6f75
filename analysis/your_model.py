"""The report's "Your model" box: the best kept model, its accuracy, and how to use it.

Which model: `trainables.model_file`'s `best`, the rule `feature-reuse predict` and `--keep-models best`
use (highest validation accuracy among finished trials whose model file exists; the seed never
decides), so the box names the very file `feature-reuse predict --experiment ...` loads. Test and
OOD accuracy are that one trial's (one seed), not the answer box's mean across seeds.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

from analysis.load import Results
from trainables.model_file import best_kept, experiment_of, kept_rows, predict_command
from trainables.regimes import regime_label


@dataclass(frozen=True)
class YourModel:
    file: str
    trial_id: str
    arch: str
    regime: str
    train_size: str
    seed: int
    val_acc: float
    test_acc: float
    ood_acc: float | None
    ood_label: str
    predict: str
    export: str
    snippet: str

    @property
    def label(self) -> str:
        return f"{self.arch} {regime_label(self.regime).lower()}"

    def lines(self) -> list[str]:
        """The console's version of the box."""
        ood = "" if self.ood_acc is None else f", {self.ood_label} {100 * self.ood_acc:.1f}%"
        return [f"YOUR MODEL: {self.label} (train size {self.train_size}, seed {self.seed}, trial "
                f"{self.trial_id}): validation {100 * self.val_acc:.1f}%, test "
                f"{100 * self.test_acc:.1f}%{ood}", f"  file:    {self.file}",
                f"  predict: {self.predict}", f"  export:  {self.export}"]


def snippet(file: str) -> str:
    """Five lines of Python that classify an image with the model file."""
    return "\n".join([
        "from feature_reuse.inference import Predictor",
        f"predictor = Predictor.load({file!r})",
        'probs = predictor.probs_of(["photo.jpg"])  # (images, classes), the model\'s own transform',
        "best = probs.argmax(dim=1).tolist()",
        "print([predictor.classes[i] for i in best], probs.tolist())"])


def build(res: Results) -> YourModel | None:
    """The box, or None when no finished trial kept its model file."""
    row = best_kept(kept_rows(res.root))
    if row is None:
        return None
    experiment = experiment_of(res.root)
    ood = row.get("ood_acc")
    return YourModel(
        file=row["model_path"], trial_id=row["trial_id"], arch=row["arch"], regime=row["regime"],
        train_size=row["train_size"], seed=int(row["seed"]), val_acc=float(row["best_val_acc"]),
        test_acc=float(row["test_acc"]),
        ood_acc=None if ood is None or math.isnan(ood) else float(ood), ood_label=res.ood_label,
        predict=predict_command(experiment),
        export=(f"feature-reuse export --experiment {shlex.quote(experiment)} --format torchscript "
                "--out model.ts"),
        snippet=snippet(row["model_path"]))
