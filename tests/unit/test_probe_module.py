"""The linear probe's kept Linear: softmax(Linear(x)) is the regression's predict_proba(x) on the
same raw features, for two classes (scikit-learn's one-row binary model), three classes, with and
without standardisation, and with a class the training split lacked. Tolerance: 1e-6 absolute on
probabilities (float32 Linear against float64 scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from trainables.linear_probe import Probe
from trainables.model_file import ABSENT_LOGIT, regression_linear

TOL = 1e-6


def _data(classes: list[int], n: int = 60, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.array([classes[i % len(classes)] for i in range(n)])
    # features on very different scales and offsets, as a backbone's are
    x = rng.normal(size=(n, dim)) * rng.uniform(0.01, 50, dim) + rng.uniform(-5, 5, dim)
    x[:, :3] += y[:, None] * 0.8 * x[:, :3].std(0)
    return x, y


@pytest.mark.parametrize("classes,num_classes,standardize", [
    ([0, 1], 2, True), ([0, 1], 2, False), ([0, 1, 2], 3, True), ([0, 2], 3, True),
    ([0, 1, 3], 4, True)])
def test_linear_softmax_is_the_regressions_probabilities(classes, num_classes, standardize):
    x, y = _data(classes)
    scaler = StandardScaler().fit(x) if standardize else None
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(x) if scaler else x, y)
    probe = Probe(clf, scaler, num_classes)
    linear = regression_linear(clf.coef_, clf.intercept_, clf.classes_, num_classes,
                               scaler.mean_ if scaler else None, scaler.scale_ if scaler else None)
    x_new, _ = _data(classes, n=40, seed=1)  # other images than the fit's
    with torch.no_grad():
        got = torch.softmax(linear(torch.from_numpy(x_new).float()), dim=1).double().numpy()
    want = probe.probs(x_new)
    assert got.shape == want.shape == (40, num_classes)
    assert np.abs(got - want).max() < TOL
    assert (got.argmax(1) == want.argmax(1)).all()
    absent = sorted(set(range(num_classes)) - set(classes))
    assert (got[:, absent] == 0).all()
    assert torch.equal(linear.bias[absent], torch.full((len(absent),), ABSENT_LOGIT))


def test_a_wrong_fold_is_caught():
    """The check can fail: dropping the standardisation's offset changes the probabilities."""
    x, y = _data([0, 1, 2])
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(x), y)
    wrong = regression_linear(clf.coef_, clf.intercept_, clf.classes_, 3, None, scaler.scale_)
    with torch.no_grad():
        got = torch.softmax(wrong(torch.from_numpy(x).float()), dim=1).numpy()
    assert np.abs(got - Probe(clf, scaler, 3).probs(x)).max() > 0.01
