"""Shared test setup: one torch thread per test process keeps tiny models fast on 2-core machines."""
import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest
import torch

from shortrun.data.prepared import load_split, load_vocab
from shortrun.params import build_config, data_root
from shortrun.paths import PREPARED
from tasks.prepare import prepare

torch.set_num_threads(1)


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
        prepare(cfg.data, root)
    prepared = folder / PREPARED
    return {"cfg": cfg, "vocab": load_vocab(prepared), "train": load_split("train", prepared),
            "valid": load_split("valid", prepared), "prepared": prepared}
