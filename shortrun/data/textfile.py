"""Read a text file as lines without letting a bad byte hide where it is.

Corpus and vocabulary files are validated here, before any library parses them, so that a
non-UTF-8 byte is reported with its file and line rather than as a decoder traceback.
"""
from __future__ import annotations

from pathlib import Path

from shortrun.errors import DataError


def read_lines(path: Path, source: str) -> list[str | UnicodeDecodeError]:
    """The file's lines (1-based line i is item i-1); a line that is not UTF-8 is its decode error.

    `source` says where the path came from (e.g. the param `data.train_file`) for the missing-file error.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found (from {source})")
    data = path.read_bytes()
    try:
        return _split(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines: list[str | UnicodeDecodeError] = []
    for line in raw:
        try:
            lines.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as err:
            lines.append(err)
    return lines


def _split(text: str) -> list[str | UnicodeDecodeError]:
    """Split on '\\n' only (str.splitlines would also split on rarer separators and shift line numbers)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def describe_decode_error(err: UnicodeDecodeError) -> str:
    """'not UTF-8 (byte 0xff at column 7)' for a line's decode error."""
    byte = err.object[err.start]
    return f"not UTF-8 (byte 0x{byte:02x} at column {err.start + 1}); expected UTF-8 text"
