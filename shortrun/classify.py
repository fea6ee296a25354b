"""Downstream use of exported latents: few-label classifiers and unsupervised clustering.

The paper's claim is that the latent space is useful with few labels. This module measures it on plain
numpy arrays (no I/O, no tracking): a scikit-learn classifier per label budget, its regularisation chosen on
the validation split, its test accuracy spread over resampled training sets; and a Gaussian mixture whose
clusters are matched one-to-one to labels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from shortrun.errors import ConfigError, DataError

ClassifierKind = Literal["logreg", "mlp"]
MLP_HIDDEN = (64,)


@dataclass(frozen=True)
class Labeled:
    """Latents with their labels; `name` (a file or split) is what error messages point at."""

    name: str
    z: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray, name: str) -> "Labeled":
        return Labeled(name, self.z[rows], self.labels[rows])


def require_classes(data: Labeled) -> None:
    """A classifier can neither be fitted nor judged on a single class: say which split has one."""
    classes = np.unique(data.labels)
    if len(classes) < 2:
        found = f"only label {classes[0]}" if len(classes) else "no sentences"
        raise DataError(f"{data.name}: needs at least two classes to classify, found {found}")


def make_classifier(kind: ClassifierKind, c: float, seed: int) -> Pipeline:
    """Standardised latents into a logistic regression (inverse L2 strength C) or an MLP (L2 alpha = 1/C)."""
    if kind == "logreg":
        head = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    else:
        head = MLPClassifier(hidden_layer_sizes=MLP_HIDDEN, alpha=1.0 / c, max_iter=500, random_state=seed)
    return make_pipeline(StandardScaler(), head)


@dataclass(frozen=True)
class Fit:
    """One fitted classifier, the C that won on validation and its accuracies."""

    model: Pipeline
    c: float
    valid_accuracy: float
    test_accuracy: float


def fit_best(train: Labeled, valid: Labeled, test: Labeled, kind: ClassifierKind, c_grid: list[float], seed: int) -> Fit:
    """Fit one classifier per C, keep the best on validation (first wins a tie), report its test accuracy."""
    if not c_grid or min(c_grid) <= 0:
        raise ConfigError(f"classify.c_grid: expected one or more positive values of C, got {c_grid}")
    require_classes(train)
    candidates = []
    for c in c_grid:
        model = make_classifier(kind, c, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # small budgets: judged by validation anyway
            model.fit(train.z, train.labels)
        candidates.append((float(model.score(valid.z, valid.labels)), c, model))
    score, c, model = max(candidates, key=lambda candidate: candidate[0])  # max keeps the first of a tie
    return Fit(model, c, score, float(model.score(test.z, test.labels)))


def budget_samples(budget: int, official: Labeled | None, pool: Labeled, seeds: int) -> list[Labeled]:
    """The training sets of one budget: the corpus's own subset as seed 0, then seeded resamples of the pool.

    The pool is the largest labeled set; a budget that uses all of it cannot be resampled and gets one set.
    Without an official subset, seed 0 is a resample too.
    """
    if budget > len(pool):
        raise DataError(f"classify.budgets: budget {budget} is larger than the labeled data, {pool.name} has {len(pool)} sentences")
    if official is not None and len(official) < budget:
        raise DataError(f"classify.budgets: budget {budget} is larger than the labeled data, {official.name} has {len(official)} sentences")
    n_sets = seeds if budget < len(pool) else 1
    sets = []
    for seed in range(n_sets):
        if seed == 0 and official is not None:
            sets.append(official.take(np.arange(budget), official.name))
        else:
            rows = np.sort(np.random.default_rng(seed).choice(len(pool), size=budget, replace=False))
            sets.append(pool.take(rows, f"{pool.name} (resample of {budget}, seed {seed})"))
    return sets


@dataclass
class BudgetResult:
    """Test accuracy of one label budget over its training sets; `fits[0]` is the seed-0 classifier."""

    budget: int
    fits: list[Fit] = field(default_factory=list)

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([fit.test_accuracy for fit in self.fits])

    def summary(self) -> dict[str, float | int]:
        """Mean and spread of test accuracy, number of training sets, and the C of seed 0."""
        return {
            "acc_mean": float(self.accuracies.mean()),
            "acc_std": float(self.accuracies.std()),
            "n_seeds": len(self.fits),
            "c": self.fits[0].c,
        }


def evaluate_budget(
    budget: int,
    official: Labeled | None,
    pool: Labeled,
    valid: Labeled,
    test: Labeled,
    kind: ClassifierKind,
    c_grid: list[float],
    seeds: int,
) -> BudgetResult:
    """Fit and score the classifiers of one budget (validation and test must hold two classes or more)."""
    require_classes(valid)
    require_classes(test)
    result = BudgetResult(budget)
    for seed, train in enumerate(budget_samples(budget, official, pool, seeds)):
        result.fits.append(fit_best(train, valid, test, kind, c_grid, seed))
    return result


def cluster_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of clusters mapped one-to-one onto labels by the matching that agrees most (Hungarian).

    With more clusters than labels the unmatched clusters count as errors.
    """
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    label_ids, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(cluster_ids), len(label_ids)), dtype=np.int64)
    np.add.at(counts, (cluster_index, label_index), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def gmm_accuracy(fit_z: np.ndarray, test: Labeled, n_components: int, seed: int) -> float:
    """Fit a full-covariance Gaussian mixture without labels, then score its test clusters against the labels."""
    require_classes(test)
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed)
    gmm.fit(fit_z)
    return cluster_accuracy(gmm.predict(test.z), test.labels)
