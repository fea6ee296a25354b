"""The prepared-data layout every later stage reads (data/prepared/):

    vocab.txt            one token per line, id = line number, ids 0..3 = <pad> <unk> <s> </s>
    train/ valid/ test/  datasets.Dataset (save_to_disk) with columns id, text, ids, label
    labeled/budgets.json the label budgets (a list, empty for an unlabeled corpus)
    labeled/<budget>/    the labeled training subsets, same columns

Each of vocab.txt, train/, valid/, test/ and labeled/ is a DVC output of its own, and writing the same
data gives the same bytes, so a stage that reads only some of them (training: vocab, train, valid) is not
rerun when another changes (a new test file reruns only export and evaluate).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import datasets
from datasets import Dataset, Features, List, Value, load_from_disk

from shortrun.data.corpus import CorpusSplit
from shortrun.data.vocab import Vocab
from shortrun.errors import DataError
from shortrun.io import atomic_dir, write_json
from shortrun.paths import PREPARED

SPLITS = ("train", "valid", "test")
VOCAB_FILE = "vocab.txt"
LABELED_DIR = "labeled"
BUDGETS_FILE = "budgets.json"
FEATURES = Features(
    {
        "id": Value("int64"),  # 0-based line (or row) number in the source
        "text": Value("string"),  # tokens joined by single spaces
        "ids": List(Value("int32")),  # token ids, without <s> and </s>
        "label": Value("int64"),  # index into data.labels, -1 when unlabeled
    }
)


def to_dataset(split: CorpusSplit, vocab: Vocab) -> Dataset:
    """Encode a corpus split into the prepared columns."""
    return Dataset.from_dict(
        {
            "id": split.line_ids,
            "text": [" ".join(tokens) for tokens in split.tokens],
            "ids": [vocab.encode(tokens) for tokens in split.tokens],
            "label": split.labels,
        },
        features=FEATURES,
    )


def write_prepared(target: Path, vocab: Vocab, splits: Mapping[str, Dataset], labeled: Mapping[int, Dataset]) -> None:
    """Write the whole layout at once: `target` is replaced only when every part was written."""
    with atomic_dir(target) as tmp, _quiet():
        vocab.save(tmp / VOCAB_FILE)
        for name, dataset in splits.items():
            dataset.save_to_disk(str(tmp / name))
        # always there (DVC tracks it as an output of its own), with a manifest so it is never empty
        write_json(tmp / LABELED_DIR / BUDGETS_FILE, sorted(labeled))
        for budget, dataset in labeled.items():
            dataset.save_to_disk(str(tmp / LABELED_DIR / str(budget)))


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the per-split "Saving the dataset" bars (each lasts milliseconds) without changing the global setting."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def load_vocab(prepared_dir: str | Path = PREPARED) -> Vocab:
    """The vocabulary of the prepared data."""
    return Vocab.load(Path(prepared_dir) / VOCAB_FILE)


def load_split(split: str, prepared_dir: str | Path = PREPARED) -> Dataset:
    """One prepared split: train, valid or test."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: unknown; expected one of {', '.join(SPLITS)}")
    return _load(Path(prepared_dir) / split)


def labeled_budgets(prepared_dir: str | Path = PREPARED) -> list[int]:
    """The label budgets written by prepare, smallest first (empty for unlabeled corpora)."""
    folder = Path(prepared_dir) / LABELED_DIR
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def load_labeled(budget: int, prepared_dir: str | Path = PREPARED) -> Dataset:
    """The labeled training subset with `budget` labels."""
    return _load(Path(prepared_dir) / LABELED_DIR / str(budget))


def _load(folder: Path) -> Dataset:
    if not folder.is_dir():
        raise DataError(f"{folder}: prepared data not found; expected the output of `dvc repro prepare`")
    return load_from_disk(str(folder))
