"""Read a corpus split into token lists, line ids and label ids, applying the malformed-line policy.

Local files are `LABEL<TAB>sentence` (labeled corpora) or one sentence per line; a hub dataset has
`text` (and `label`) columns. Either way each record is checked here, so a bad line fails with its
file and line (policy `fail`) or is counted and left out (policy `skip`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

from shortrun.data.textfile import describe_decode_error, read_lines
from shortrun.data.tokenize import tokenize
from shortrun.errors import DataError

NO_LABEL = -1
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
HUB_TEXT_COLUMN = "text"
HUB_LABEL_COLUMN = "label"
Policy = Literal["skip", "fail"]

log = logging.getLogger(__name__)


class MalformedLine(ValueError):
    """One record is unusable; the message says what was expected (the caller adds where)."""


@dataclass
class CorpusSplit:
    """The usable sentences of one source, in source order, and how many records were skipped."""

    source: str
    line_ids: list[int] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    malformed: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def _subset(self, keep: list[int]) -> "CorpusSplit":
        return CorpusSplit(
            self.source,
            [self.line_ids[i] for i in keep],
            [self.tokens[i] for i in keep],
            [self.labels[i] for i in keep],
            self.malformed,
        )

    def filter_length(self, min_len: int, max_len: int) -> tuple["CorpusSplit", int]:
        """Sentences with min_len..max_len tokens, and how many were dropped."""
        keep = [i for i, t in enumerate(self.tokens) if min_len <= len(t) <= max_len]
        return self._subset(keep), len(self) - len(keep)

    def head(self, limit: int | None) -> tuple["CorpusSplit", int]:
        """The first `limit` sentences (all when None), and how many were cut."""
        if limit is None or limit >= len(self):
            return self, 0
        return self._subset(list(range(limit))), len(self) - limit


def label_index(label: str, labels: Sequence[str]) -> int:
    """Position of `label` in the expected label set (the label id stored in prepared splits)."""
    if label not in labels:
        raise MalformedLine(f"label {label!r} is not an expected label; expected one of {', '.join(labels)} (data.labels)")
    return list(labels).index(label)


def parse_labeled_line(line: str, labels: Sequence[str]) -> tuple[int, list[str]]:
    """(label id, tokens) of a `LABEL<TAB>sentence` line."""
    label, tab, sentence = line.partition("\t")
    if not tab:
        raise MalformedLine(f"no TAB after the label; expected LABEL<TAB>sentence with LABEL one of {', '.join(labels)}")
    return label_index(label.strip(), labels), tokenize(sentence)


def parse_line(line: str | UnicodeDecodeError, labels: Sequence[str] | None) -> tuple[int, list[str]]:
    """(label id, tokens) of one line; unlabeled corpora (labels None) get NO_LABEL."""
    if isinstance(line, UnicodeDecodeError):
        raise MalformedLine(describe_decode_error(line))
    if labels is None:
        return NO_LABEL, tokenize(line)
    return parse_labeled_line(line, labels)


def read_corpus_file(path: Path, labels: Sequence[str] | None, on_malformed: Policy, source: str) -> CorpusSplit:
    """All sentences of a local corpus file; `source` names the param that pointed at it."""
    lines = read_lines(path, source)
    records = ((i, _attempt(parse_line, line, labels)) for i, line in enumerate(lines))
    return _collect(records, on_malformed, str(path), where=lambda i: f"{path}:{i + 1}", source=source)


def load_hub_split(hub_id: str, split: str, labels: Sequence[str] | None, on_malformed: Policy) -> CorpusSplit:
    """One split of a Hugging Face hub dataset (needs internet; columns `text` and, if labeled, `label`)."""
    import datasets

    name = HUB_SPLITS[split]
    try:
        table = datasets.load_dataset(hub_id, split=name)
    except Exception as err:  # the hub client raises many unrelated types; the user needs one line
        reason = f"{type(err).__name__}: {err}".replace("\n", " ")
        raise DataError(f"{hub_id}: cannot load split {name!r} from the Hugging Face hub ({reason})") from None
    wanted = [HUB_TEXT_COLUMN] + ([HUB_LABEL_COLUMN] if labels is not None else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(f"{hub_id}[{name}]: no column {missing[0]!r}; expected columns {', '.join(wanted)}")
    label_names = _hub_label_names(table)
    records = ((i, _attempt(_hub_record, row, labels, label_names)) for i, row in enumerate(table))
    shown = f"{hub_id}[{name}]"
    return _collect(records, on_malformed, shown, where=lambda i: f"{shown} row {i}", source="data.hub_id")


def _hub_label_names(table) -> list[str] | None:
    """Names of a ClassLabel label column, so integer labels can be matched against data.labels."""
    feature = table.features.get(HUB_LABEL_COLUMN)
    return list(feature.names) if hasattr(feature, "names") else None


def _hub_record(row: dict, labels: Sequence[str] | None, label_names: list[str] | None) -> tuple[int, list[str]]:
    """(label id, tokens) of one hub row; a missing text is an empty sentence (dropped by min_len)."""
    tokens = tokenize(row[HUB_TEXT_COLUMN] or "")
    if labels is None:
        return NO_LABEL, tokens
    raw = row[HUB_LABEL_COLUMN]
    return label_index(label_names[raw] if label_names and isinstance(raw, int) else str(raw), labels), tokens


def _attempt(parse, *args) -> tuple[int, list[str]] | MalformedLine:
    """The parse result, or the MalformedLine it raised (so the collector applies the policy)."""
    try:
        return parse(*args)
    except MalformedLine as err:
        return err


def _collect(
    records: Iterable[tuple[int, tuple[int, list[str]] | MalformedLine]],
    on_malformed: Policy,
    name: str,
    where: Callable[[int], str],
    source: str,
) -> CorpusSplit:
    """Gather parsed records; a malformed one fails with its location or is counted."""
    split = CorpusSplit(name)
    first_problem = ""
    for index, record in records:
        if isinstance(record, MalformedLine):
            problem = f"{where(index)}: {record}"
            if on_malformed == "fail":
                raise DataError(f"{problem} (or set data.on_malformed: skip)")
            split.malformed += 1
            first_problem = first_problem or problem
            continue
        label, tokens = record
        split.line_ids.append(index)
        split.tokens.append(tokens)
        split.labels.append(label)
    if split.malformed:
        log.warning("skipped %d malformed lines in %s; first: %s", split.malformed, name, first_problem)
    if not any(split.tokens):
        detail = f" ({split.malformed} malformed lines skipped)" if split.malformed else ""
        raise DataError(f"{name}: empty corpus{detail}; expected at least one sentence (from {source})")
    return split

