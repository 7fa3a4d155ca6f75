"""Does the report's 95% interval cover the truth, and does its p reject a true null only 5% of
the time, for the designs people run (2-10 seeds, 46 test images, an unstable scratch baseline)?

    python bench/calibration.py [--sets 2000] [--seeds 2 3 5 10] [--images 46]

Runs `analysis.stats.paired_effect` (transfer minus scratch) and `crossed_accuracy` (one
regime's accuracy, the report's headline numbers) on data sets simulated from the model below and
prints, per cell and number of seeds, how often the 95% interval covers the true value (the
population one: over new seeds and new images) and how often p < 0.05 (false rejections in null
cells, power elsewhere). docs/analysis.md ("Calibration") shows the table and why the method was
chosen; tests/unit/test_calibration.py runs a small version of it.

The model, per model X (A = transfer, B = scratch), seed s and image i:

    logit P(X right on i | s) = m_X + u_Xi + v_Xs + w_Xsi,   right ~ Bernoulli(P)

u: the image's difficulty (sd image_sd; A's and B's correlated by image_corr, since an image
hard for one model tends to be hard for the other), v: the seed's luck (sd seed_sd_a/_b, large
for an unstable scratch run), w: which images a seed happens to get right (sd inter_sd; the
Bernoulli draw adds to it).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats import ALPHA, crossed_accuracy, paired_effect  # noqa: E402
from bench.harness import parser  # noqa: E402

MC_Z = 2.0
"""A cell passes when coverage >= TARGET_COVERAGE - MC_Z * its Monte-Carlo standard error, and
the null rejection rate <= ALPHA + MC_Z * its standard error."""
TARGET_COVERAGE = 0.93


@dataclass(frozen=True)
class Cell:
    """One population of (transfer, scratch) models: logit means, effect sds (see the module
    docstring)."""

    name: str
    what: str
    logit_a: float
    logit_b: float
    image_sd: float
    image_corr: float
    seed_sd_a: float
    seed_sd_b: float
    inter_sd: float

    @property
    def null(self) -> bool:
        return (self.logit_a, self.seed_sd_a) == (self.logit_b, self.seed_sd_b)

    def true_accuracy(self, which: str) -> float:
        """E P(right) over new seeds and images: a one-dimensional normal integral of the logistic
        (Gauss-Hermite, exact to ~1e-12 here)."""
        mean, seed_sd = (self.logit_a, self.seed_sd_a) if which == "a" else (self.logit_b, self.seed_sd_b)
        sd = math.sqrt(self.image_sd ** 2 + seed_sd ** 2 + self.inter_sd ** 2)
        x, w = np.polynomial.hermite_e.hermegauss(160)
        return float(np.sum(w * expit(mean + sd * x)) / math.sqrt(2 * math.pi))

    @property
    def true_difference(self) -> float:
        return self.true_accuracy("a") - self.true_accuracy("b")

    def draw(self, rng: np.random.Generator, sets: int, seeds: int, images: int
             ) -> tuple[np.ndarray, np.ndarray]:
        """`sets` data sets at once: two (sets, seeds, images) boolean arrays (A's and B's
        correctness; row s of each = one seed's model, the same images for every seed)."""
        z = rng.standard_normal((sets, 1, images))
        own = rng.standard_normal((2, sets, 1, images))
        rho = self.image_corr
        out = []
        for k, (mean, seed_sd) in enumerate(((self.logit_a, self.seed_sd_a), (self.logit_b, self.seed_sd_b))):
            image = self.image_sd * (rho * z + math.sqrt(1 - rho * rho) * own[k]) if rho < 1 else \
                self.image_sd * z
            seed = seed_sd * rng.standard_normal((sets, seeds, 1))
            inter = self.inter_sd * rng.standard_normal((sets, seeds, images))
            out.append(rng.random((sets, seeds, images)) < expit(mean + image + seed + inter))
        return out[0], out[1]


CELLS: tuple[Cell, ...] = (
    Cell("unstable scratch", "seed-dominated: scratch seeds land far apart (sd 1.5 on the logit), "
         "transfer steady", 2.2, 0.6, 1.0, 0.5, 0.3, 1.5, 0.5),
    Cell("image-dominated", "the same images are hard for every seed (image sd 2.5, A and B "
         "correlated 0.8); a small true difference", 1.7, 1.3, 2.5, 0.8, 0.15, 0.15, 0.3),
    Cell("seed x image", "each seed gets other images right (interaction sd 2), little else",
         1.5, 0.8, 0.3, 0.5, 0.2, 0.2, 2.0),
    Cell("near ceiling", "transfer at ~93%, scratch ~85%, moderate everything", 3.2, 2.2, 1.2, 0.6,
         0.3, 0.6, 0.6),
    Cell("at the ceiling", "transfer at ~96%, scratch ~87%: most images right for both", 4.5, 2.8,
         1.5, 0.6, 0.3, 0.6, 0.7),
    Cell("null, unstable", "no difference; both regimes' seeds vary strongly (sd 1.0)", 1.0, 1.0,
         1.0, 0.5, 1.0, 1.0, 0.7),
    Cell("null, images", "no difference; image-dominated, A and B agree on most images", 1.5, 1.5,
         2.5, 0.9, 0.15, 0.15, 0.3),
    Cell("null, seed x image", "no difference; seed x image dominated", 1.0, 1.0, 0.3, 0.5, 0.2, 0.2,
         2.0),
)

@dataclass(frozen=True)
class Row:
    cell: str
    seeds: int
    truth: float
    coverage: float
    rejection: float
    width: float
    """Median width of the interval."""
    sets: int

    @property
    def coverage_se(self) -> float:
        return math.sqrt(max(self.coverage * (1 - self.coverage), 0.0025) / self.sets)

    @property
    def rejection_se(self) -> float:
        return math.sqrt(max(self.rejection * (1 - self.rejection), ALPHA * (1 - ALPHA)) / self.sets)

    def passes(self, null: bool) -> bool:
        ok = self.coverage >= TARGET_COVERAGE - MC_Z * self.coverage_se
        if null:
            ok = ok and self.rejection <= ALPHA + MC_Z * self.rejection_se
        return ok


def run_paired(cell: Cell, seeds: int, images: int, sets: int, rng: np.random.Generator) -> Row:
    """`sets` simulated data sets through analysis.stats.paired_effect (transfer - scratch)."""
    a, b = cell.draw(rng, sets, seeds, images)
    truth = cell.true_difference
    lo, hi, p = np.array([(e.lo, e.hi, e.p_value) for k in range(sets)
                          for e in [paired_effect(a[k], b[k])]]).T
    return Row(cell.name, seeds, truth, float(np.mean((lo <= truth) & (truth <= hi))),
               float(np.mean(p < ALPHA)), float(np.median(hi - lo)), sets)


def run_accuracy(cell: Cell, which: str, seeds: int, images: int, sets: int, rng: np.random.Generator
                 ) -> Row:
    """`sets` simulated data sets through analysis.stats.crossed_accuracy (model `which`)."""
    x = cell.draw(rng, sets, seeds, images)[which == "b"]
    truth = cell.true_accuracy(which)
    lo, hi = np.array([(e.lo, e.hi) for k in range(sets) for e in [crossed_accuracy(x[k])]]).T
    return Row(f"{cell.name} ({'transfer' if which == 'a' else 'scratch'})", seeds, truth,
               float(np.mean((lo <= truth) & (truth <= hi))), math.nan, float(np.median(hi - lo)), sets)


def paired_table(cells: Sequence[Cell], seed_counts: Sequence[int], images: int, sets: int,
                 seed: int = 0) -> list[tuple[Cell, Row]]:
    return [(cell, run_paired(cell, s, images, sets, np.random.default_rng([seed, i, j])))
            for i, cell in enumerate(cells) for j, s in enumerate(seed_counts)]


def accuracy_table(cells: Sequence[Cell], seed_counts: Sequence[int], images: int, sets: int,
                   seed: int = 0) -> list[Row]:
    return [run_accuracy(cell, which, s, images, sets, np.random.default_rng([seed, i, j, k]))
            for i, cell in enumerate(cells) if not cell.null
            for k, which in ((1, "a"), (2, "b")) for j, s in enumerate(seed_counts)]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def paired_markdown(rows: list[tuple[Cell, Row]]) -> str:
    out = []
    for cell, r in rows:
        rej = f"{r.rejection:.3f}" + (" (false)" if cell.null else " (power)")
        flag = "" if r.passes(cell.null) else " **miss**"
        out.append([cell.name, str(r.seeds), f"{100 * r.truth:+.1f}", f"{r.coverage:.3f}{flag}", rej,
                    f"{100 * r.width:.1f}"])
    return _markdown(["cell", "seeds", "true diff (pp)", "coverage of 95% interval", "p < 0.05",
                      "median width (pp)"], out)


def accuracy_markdown(rows: list[Row]) -> str:
    out = [[r.cell, str(r.seeds), f"{100 * r.truth:.1f}",
            f"{r.coverage:.3f}" + ("" if r.passes(False) else " **miss**"), f"{100 * r.width:.1f}"]
           for r in rows]
    return _markdown(["population", "seeds", "true accuracy (%)", "coverage of 95% interval",
                      "median width (pp)"], out)


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--sets", type=int, default=2000, help="simulated data sets per cell (default 2000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 5, 10])
    p.add_argument("--images", type=int, default=46)
    args, cells = p.parse_args(argv), CELLS
    print("Cells (46 images unless --images):")
    for c in cells:
        print(f"  {c.name}: {c.what}; true difference {100 * c.true_difference:+.1f} pp")
    t0 = time.perf_counter()
    rows = paired_table(cells, args.seeds, args.images, args.sets)
    print(f"\nTransfer - scratch: analysis.stats.paired_effect, {args.sets} data sets per row, "
          f"{args.images} images (MC se of a coverage of 0.95: "
          f"{100 * math.sqrt(0.0475 / args.sets):.1f} pp)\n")
    print(paired_markdown(rows))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    acc = accuracy_table(cells, args.seeds, args.images, args.sets)
    print(f"\nOne regime's accuracy: analysis.stats.crossed_accuracy, {args.sets} data sets per row\n")
    print(accuracy_markdown(acc))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    ok = all(r.passes(c.null) for c, r in rows) and all(r.passes(False) for r in acc)
    print(f"\n{'every cell passes' if ok else 'some cells miss'} (coverage >= {TARGET_COVERAGE} and "
          f"null rejection <= {ALPHA:g} within {MC_Z:g} Monte-Carlo standard errors)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
