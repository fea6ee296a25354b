"""shortrun.classify on synthetic latents: separable classes are learned, noise is not, clusters are matched."""
from __future__ import annotations

import numpy as np
import pytest

from shortrun.classify import (
    Labeled,
    budget_samples,
    cluster_accuracy,
    evaluate_budget,
    gmm_accuracy,
    make_classifier,
)
from shortrun.errors import ConfigError, DataError

DIM = 8


def linear_split(name: str, n: int, seed: int) -> Labeled:
    """Labels given by the sign of a fixed direction, with a margin so the classes are separable."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, DIM)).astype(np.float32)
    direction = np.ones(DIM) / np.sqrt(DIM)
    z += np.outer(np.sign(z @ direction), direction).astype(np.float32)  # push each side away from the boundary
    return Labeled(name, z, (z @ direction > 0).astype(np.int64))


def random_split(name: str, n: int, seed: int) -> Labeled:
    rng = np.random.default_rng(seed)
    return Labeled(name, rng.normal(size=(n, DIM)).astype(np.float32), rng.integers(0, 2, size=n))


def test_linear_structure_is_learned_from_few_labels() -> None:
    pool = linear_split("pool", 1000, 0)
    result = evaluate_budget(
        50, pool.take(np.arange(50), "labeled_50"), pool, linear_split("valid", 300, 1), linear_split("test", 500, 2),
        "logreg", [0.1, 1.0, 10.0], seeds=3,
    )
    summary = result.summary()
    assert summary["n_seeds"] == 3
    assert summary["acc_mean"] > 0.95
    assert summary["c"] in (0.1, 1.0, 10.0)
    assert summary["c"] == result.fits[0].c


def test_random_latents_stay_near_chance() -> None:
    pool = random_split("pool", 1000, 0)
    result = evaluate_budget(
        200, None, pool, random_split("valid", 500, 1), random_split("test", 2000, 2), "logreg", [0.1, 1.0], seeds=2
    )
    assert abs(result.summary()["acc_mean"] - 0.5) < 0.06


def test_mlp_classifier_learns_linear_structure() -> None:
    train, test = linear_split("train", 300, 0), linear_split("test", 300, 1)
    model = make_classifier("mlp", 1.0, seed=0).fit(train.z, train.labels)
    assert model.score(test.z, test.labels) > 0.9


def test_official_subset_is_seed_zero_and_resamples_differ() -> None:
    pool = linear_split("labeled_1000.parquet", 1000, 0)
    official = pool.take(np.arange(100), "labeled_100.parquet")
    sets = budget_samples(100, official, pool, seeds=3)
    assert len(sets) == 3
    np.testing.assert_array_equal(sets[0].z, official.z)
    assert all(len(s) == 100 for s in sets)
    assert not np.array_equal(sets[1].z, sets[2].z)
    again = budget_samples(100, official, pool, seeds=3)
    np.testing.assert_array_equal(sets[2].z, again[2].z)  # resamples are seeded


def test_budget_using_the_whole_pool_is_not_resampled() -> None:
    pool = linear_split("labeled_200.parquet", 200, 0)
    assert len(budget_samples(200, pool, pool, seeds=5)) == 1


def test_budget_larger_than_labeled_data_names_budget_and_file() -> None:
    pool = linear_split("latents/sri/labeled_500.parquet", 500, 0)
    with pytest.raises(DataError, match=r"budget 1000 .*latents/sri/labeled_500.parquet has 500"):
        budget_samples(1000, None, pool, seeds=2)
    short = pool.take(np.arange(80), "latents/sri/labeled_100.parquet")
    with pytest.raises(DataError, match=r"budget 100 .*latents/sri/labeled_100.parquet has 80"):
        budget_samples(100, short, pool, seeds=2)


def test_single_class_split_is_named() -> None:
    pool = linear_split("pool", 400, 0)
    valid = Labeled("latents/sri/valid.parquet", pool.z[:50], np.zeros(50, dtype=np.int64))
    with pytest.raises(DataError, match=r"^latents/sri/valid.parquet: needs at least two classes.*only label 0$"):
        evaluate_budget(100, None, pool, valid, linear_split("test", 100, 1), "logreg", [1.0], seeds=1)


def test_empty_c_grid_is_a_config_error() -> None:
    pool = linear_split("pool", 200, 0)
    with pytest.raises(ConfigError, match="classify.c_grid"):
        evaluate_budget(100, None, pool, pool, pool, "logreg", [], seeds=1)


def test_cluster_accuracy_uses_the_best_matching() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert cluster_accuracy(np.array([2, 2, 0, 0, 1, 1, 1]), labels) == 1.0  # clusters labelled 2, 0, 1
    assert cluster_accuracy(np.array([1, 1, 1, 1, 0, 0, 0]), labels) == pytest.approx(5 / 7)


def test_gmm_recovers_separated_clusters_whatever_their_order() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[8.0, 0.0], [0.0, 8.0], [-8.0, -8.0]])
    labels = rng.integers(0, 3, size=600)
    z = centres[labels] + rng.normal(size=(600, 2))
    assert gmm_accuracy(z[:300], Labeled("test", z[300:], labels[300:]), n_components=3, seed=0) == 1.0
