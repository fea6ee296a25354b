"""Shared test setup: one torch thread per test process keeps tiny models fast on 2-core machines."""
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest
import torch

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
