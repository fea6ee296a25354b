"""Shared test setup: one torch thread per test process keeps tiny models fast on 2-core machines, and each
test process (pytest-xdist runs two) keeps Prefect's home, where a temporary server puts its database, to itself."""
import contextlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import mlflow.tracking._model_registry.utils as mlflow_registry_state
import mlflow.tracking._tracking_service.utils as mlflow_tracking_state
import mlflow.tracking.fluent as mlflow_fluent_state
import pytest
import torch

from shortrun.data.preparation import prepare_corpus
from shortrun.data.prepared import load_split, load_vocab
from shortrun.params import build_config, data_root
from shortrun.paths import PREPARED

torch.set_num_threads(1)
# Before any Prefect import reads it: not the user's ~/.prefect, and not the other test process's.
PREFECT_HOME = Path(tempfile.mkdtemp(prefix="shortrun-tests-prefect-"))
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(PREFECT_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def mlflow_follows_the_environment() -> Iterator[None]:
    """Forget the tracking URI, registry URI and active experiment a test set through MLflow's API, after it.

    MLflow keeps them process-wide and they win over $MLFLOW_TRACKING_URI: a test that points MLflow at an
    unreachable server, or at another store, would otherwise send the next module's runs there. MLflow
    also exports some of them ($MLFLOW_EXPERIMENT_ID ...) for subprocesses: those are put back as well.
    """
    saved = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_")}
    yield
    for key in [key for key in os.environ if key.startswith("MLFLOW_") and key not in saved]:
        del os.environ[key]
    os.environ.update(saved)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # exported by mlflow.set_experiment, also in module fixtures
    mlflow_tracking_state._tracking_uri = None
    mlflow_registry_state._registry_uri = None
    mlflow_fluent_state._active_experiment_id = None


@pytest.fixture(scope="session")
def sqlite_workspace() -> Callable[[Path], ContextManager[None]]:
    """Enter a folder whose own SQLite file is MLflow's tracking store and registry; both are restored after."""

    @contextmanager
    def enter(root: Path) -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            patch.setenv("MLFLOW_TRACKING_URI", uri)
            patch.setenv("MLFLOW_REGISTRY_URI", uri)  # MLflow copies it into os.environ; the patch restores it
            yield

    return enter


@pytest.fixture
def stage_workspace(tmp_path: Path, sqlite_workspace) -> Iterator[Path]:
    """An empty folder as the working directory, with its own MLflow store: where a stage's `run` writes."""
    with sqlite_workspace(tmp_path):
        yield tmp_path


@pytest.fixture
def float64() -> Iterator[None]:
    """The chain's own tensors (LSTM state, z0) follow the default dtype: float64 for exact comparisons."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny preset's prepared data (300 train / 100 valid sentences), prepared once per session."""
    cfg = build_config("tiny")
    folder, root = tmp_path_factory.mktemp("tiny"), data_root()
    with contextlib.chdir(folder):
        prepare_corpus(cfg.data, root)
    prepared = folder / PREPARED
    return {"cfg": cfg, "vocab": load_vocab(prepared), "train": load_split("train", prepared),
            "valid": load_split("valid", prepared), "prepared": prepared}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with end-to-end (slow) tests first, each file's tests in their own order: with two test processes
    the long files then start early and the short ones fill in around them, instead of one long file running
    alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
