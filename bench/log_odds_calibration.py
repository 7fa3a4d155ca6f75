"""Does the data-starved claim's log-odds interval cover the truth at 3-10 seeds and 46 images?

    python bench/log_odds_calibration.py [--sets 1000] [--seeds 3 5 10] [--images 46]

The claim (analysis/claims.py, transfer_gap_larger_with_less_data) reports the difference of
differences (transfer - scratch at N per class) - (transfer - scratch at all) on the accuracy
scale (`analysis.stats.effect_of`) and on the log-odds scale (`analysis.stats.log_odds_contrast`).
This simulates four groups of models, per seed s and image i:

    logit P(group g right on i | s) = m_g + u_i + v_gs + w_gsi,   right ~ Bernoulli(P)

u: the image's difficulty (shared by every group: the same test images), v: the seed's luck (its
initialisation, order and, below "all", which training images it drew; large for an unstable
scratch run), w: which images a seed happens to get right. The true values are the population
ones: sum_g sign_g logit(E acc_g) and sum_g sign_g E acc_g over new seeds and images (E by
Gauss-Hermite quadrature). Prints how often each 95% interval covers its truth.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from analysis.stats import effect_of, log_odds_contrast

SIGNS = (1, -1, -1, 1)
"""transfer at N, scratch at N, transfer at all, scratch at all."""
TARGET_COVERAGE = 0.95
MC_Z = 2.0


@dataclass(frozen=True)
class Cell:
    name: str
    means: tuple[float, float, float, float]
    seed_sd: tuple[float, float, float, float]
    image_sd: float
    inter_sd: float

    def truths(self) -> tuple[float, float]:
        """(log-odds contrast, accuracy contrast) of the population."""
        x, w = np.polynomial.hermite_e.hermegauss(80)
        acc = [float((w * expit(m + math.sqrt(s ** 2 + self.image_sd ** 2 + self.inter_sd ** 2) * x)).sum()
                     / w.sum()) for m, s in zip(self.means, self.seed_sd, strict=True)]
        return (sum(g * float(logit(a)) for g, a in zip(SIGNS, acc, strict=True)),
                sum(g * a for g, a in zip(SIGNS, acc, strict=True)))


CELLS = (
    Cell("unstable scratch", (1.5, 0.0, 3.0, 2.0), (0.4, 1.5, 0.3, 1.0), 1.0, 0.5),
    Cell("image-dominated", (1.5, 0.5, 2.5, 2.0), (0.2, 0.3, 0.2, 0.3), 2.0, 0.3),
    Cell("seed x image", (1.5, 0.5, 2.5, 2.0), (0.2, 0.3, 0.2, 0.3), 0.5, 1.5),
    Cell("near the ceiling", (2.5, 1.0, 5.0, 4.0), (0.3, 1.0, 0.3, 0.6), 1.0, 0.5),
)


def coverage(cell: Cell, seeds: int, images: int, sets: int, rng: np.random.Generator
             ) -> tuple[float, float]:
    """(log-odds coverage, accuracy coverage) over `sets` simulated data sets."""
    truth_odds, truth_acc = cell.truths()
    hit_odds = hit_acc = 0
    for _ in range(sets):
        u = rng.normal(0, cell.image_sd, images)
        eta = np.stack([m + rng.normal(0, s, (seeds, 1)) + u + rng.normal(0, cell.inter_sd, (seeds, images))
                        for m, s in zip(cell.means, cell.seed_sd, strict=True)], axis=1)
        x = (rng.random(eta.shape) < expit(eta)).astype(float)
        odds = log_odds_contrast(x, SIGNS)
        acc = effect_of((x[:, 0] - x[:, 1]) - (x[:, 2] - x[:, 3]), bounds=(-2.0, 2.0))
        hit_odds += odds.lo <= truth_odds <= odds.hi
        hit_acc += acc.lo <= truth_acc <= acc.hi
    return hit_odds / sets, hit_acc / sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/log_odds_calibration.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    p.add_argument("--images", type=int, default=46)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    floor = TARGET_COVERAGE - MC_Z * math.sqrt(TARGET_COVERAGE * (1 - TARGET_COVERAGE) / args.sets)
    print("| cell | seeds | true log-odds | log-odds coverage | accuracy-scale coverage |")
    print("|---|---|---|---|---|")
    ok = True
    for cell in CELLS:
        for seeds in args.seeds:
            c_odds, c_acc = coverage(cell, seeds, args.images, args.sets, rng)
            ok = ok and min(c_odds, c_acc) >= floor
            print(f"| {cell.name} | {seeds} | {cell.truths()[0]:+.2f} | {c_odds:.3f} | {c_acc:.3f} |")
    print(f"\n{'every cell passes' if ok else 'some cells miss'} (coverage >= {floor:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
