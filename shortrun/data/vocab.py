"""The vocabulary: fixed special ids, then words; built from a corpus or read from a corpus's own file."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from shortrun.data.textfile import describe_decode_error, read_lines
from shortrun.errors import ConfigError, DataError
from shortrun.io import write_text

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>")
_SPECIAL_SET = frozenset(SPECIALS)


class Vocab:
    """Token <-> id map whose ids 0..3 are always <pad>, <unk>, <s>, </s> (every model relies on them)."""

    def __init__(self, words: Iterable[str]):
        """`words` are the non-special tokens in id order; they get ids 4, 5, ..."""
        self._tokens: tuple[str, ...] = SPECIALS + tuple(words)
        self._ids = {token: i for i, token in enumerate(self._tokens)}
        if len(self._ids) != len(self._tokens):
            raise ValueError("vocabulary words must be unique and must not repeat a special token")

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order, specials first."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; unknown tokens become <unk>. No <s>/</s> are added."""
        return [self._ids.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first </s>, without <s> and <pad>."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (BOS, PAD):
                out.append(self._tokens[i])
        return out

    def save(self, path: str | Path) -> None:
        """Write one token per line (id = line number), atomically."""
        write_text(path, "".join(f"{token}\n" for token in self._tokens))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        """Read a file written by `save`: the specials on lines 1-4, then one word per line."""
        path = Path(path)
        numbered = _plain_tokens(path, read_lines(path, "a saved vocabulary"))
        for (number, token), special in zip(numbered, SPECIALS):
            if token != special:
                raise DataError(f"{path}:{number}: expected special token {special!r}, got {token!r}")
        if len(numbered) < len(SPECIALS):
            raise DataError(f"{path}: expected at least the {len(SPECIALS)} special tokens, got {len(numbered)} lines")
        return cls(_unique_words(path, numbered[len(SPECIALS):]))


def build_vocab(sentences: Iterable[Sequence[str]], max_size: int | None = None, min_freq: int = 1) -> Vocab:
    """Specials + words seen at least `min_freq` times, most frequent first (ties alphabetical).

    `max_size` counts the specials. Special tokens in the text (PTB's literal <unk>) are not words.
    """
    _check_max_size(max_size)
    counts = Counter(token for sentence in sentences for token in sentence if token not in _SPECIAL_SET)
    ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return Vocab(ranked if max_size is None else ranked[: max_size - len(SPECIALS)])


def read_vocab_file(path: Path, max_size: int | None = None) -> Vocab:
    """A corpus's own vocabulary, remapped so that the specials get our fixed ids.

    Two formats: one token per line in id order (short Yelp's vocab.txt), or `token id` per line
    (PTB's ptb.dict). Words keep their file order; `max_size` (specials included) keeps the first ones.
    """
    _check_max_size(max_size)
    lines = read_lines(path, "data.vocab_file")
    if not lines:
        raise DataError(f"{path}: empty vocabulary file (data.vocab_file); expected one token per line")
    first = lines[0] if isinstance(lines[0], str) else ""
    numbered = _dict_tokens(path, lines) if _is_dict_line(first) else _plain_tokens(path, lines)
    words = [(number, token) for number, token in numbered if token not in _SPECIAL_SET]
    if max_size is not None:
        words = words[: max_size - len(SPECIALS)]
    return Vocab(_unique_words(path, words))


def _check_max_size(max_size: int | None) -> None:
    if max_size is not None and max_size <= len(SPECIALS):
        raise ConfigError(f"data.max_vocab: {max_size} leaves no room for words; expected more than {len(SPECIALS)}")


def _is_dict_line(line: str) -> bool:
    parts = line.split()
    return len(parts) == 2 and parts[1].isdigit()


def _plain_tokens(path: Path, lines: list[str | UnicodeDecodeError]) -> list[tuple[int, str]]:
    """(line number, token) for one token per line; blank lines, inner spaces and bad bytes are errors."""
    numbered = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, UnicodeDecodeError):
            raise DataError(f"{path}:{number}: {describe_decode_error(line)}")
        parts = line.split()
        if len(parts) != 1:
            raise DataError(f"{path}:{number}: expected one token per line, got {line!r}")
        numbered.append((number, parts[0]))
    return numbered


def _dict_tokens(path: Path, lines: list[str | UnicodeDecodeError]) -> list[tuple[int, str]]:
    """(line number, token) for `token id` lines, in id order; the ids must be distinct."""
    by_id: dict[int, tuple[int, str]] = {}
    for number, line in enumerate(lines, start=1):
        if isinstance(line, UnicodeDecodeError):
            raise DataError(f"{path}:{number}: {describe_decode_error(line)}")
        if not _is_dict_line(line):
            raise DataError(f"{path}:{number}: expected 'token id' (like line 1), got {line!r}")
        token, index = line.split()
        if int(index) in by_id:
            raise DataError(f"{path}:{number}: id {index} is also on line {by_id[int(index)][0]}; expected distinct ids")
        by_id[int(index)] = (number, token)
    return [by_id[i] for i in sorted(by_id)]


def _unique_words(path: Path, numbered: list[tuple[int, str]]) -> list[str]:
    """The tokens of `numbered`, or a DataError naming the line of the first repeated one."""
    seen: set[str] = set()
    for number, token in numbered:
        if token in seen:
            raise DataError(f"{path}:{number}: token {token!r} appears twice; expected each token once")
        seen.add(token)
    return [token for _, token in numbered]
