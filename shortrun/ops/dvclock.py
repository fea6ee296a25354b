"""Read DVC's content hashes from `dvc.lock`, to tag MLflow runs and model versions with them.

dvc.lock is plain YAML that DVC rewrites after every stage, so reading it needs no DVC import and
no DVC lock; the hash of an output names exactly the bytes a run used or produced.
"""
from __future__ import annotations

from pathlib import Path

import yaml

LOCK_FILE = "dvc.lock"


def out_md5(path: str | Path, root: str | Path = ".") -> str | None:
    """The md5 DVC recorded for output `path` (a file or a `.dir` hash), or None when it has none yet."""
    lock = Path(root) / LOCK_FILE
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    wanted = Path(path).as_posix()
    for stage in stages.values():
        for out in stage.get("outs", []):
            if Path(out.get("path", "")).as_posix() == wanted:
                return out.get("md5")
    return None
