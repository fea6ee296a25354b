"""Reading corpus files: the label parser and every kind of bad input, under both malformed-line policies."""
import logging

import pytest

from shortrun.data.corpus import NO_LABEL, MalformedLine, parse_labeled_line, read_corpus_file
from shortrun.errors import DataError

LABELS = ["0", "1"]


def write(tmp_path, content: bytes, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_label_parser_returns_label_index_and_tokens():
    assert parse_labeled_line("1\tthe food was great !", LABELS) == (1, ["the", "food", "was", "great", "!"])
    assert parse_labeled_line("0\t a  b ", LABELS) == (0, ["a", "b"])
    assert parse_labeled_line("pos\tok", ["neg", "pos"]) == (1, ["ok"])


def test_label_parser_rejects_missing_tab_and_unknown_label():
    with pytest.raises(MalformedLine, match="no TAB after the label; expected LABEL<TAB>sentence with LABEL one of 0, 1"):
        parse_labeled_line("1 the food", LABELS)
    with pytest.raises(MalformedLine, match="label '2' is not an expected label; expected one of 0, 1"):
        parse_labeled_line("2\tthe food", LABELS)
    with pytest.raises(MalformedLine, match="label '' is not an expected label"):
        parse_labeled_line("\tthe food", LABELS)


def test_labeled_file_keeps_line_ids_labels_and_tokens(tmp_path):
    path = write(tmp_path, b"1\tgreat beer !\n0\tnever again .\r\n1\tok\n")
    split = read_corpus_file(path, LABELS, "fail", "data.train_file")
    assert split.line_ids == [0, 1, 2]
    assert split.labels == [1, 0, 1]
    assert split.tokens == [["great", "beer", "!"], ["never", "again", "."], ["ok"]]
    assert split.malformed == 0


def test_unlabeled_file_strips_ptb_spaces_and_has_no_labels(tmp_path):
    path = write(tmp_path, b" pierre <unk> N years old \n\n a b \n")
    split = read_corpus_file(path, None, "fail", "data.train_file")
    assert split.tokens == [["pierre", "<unk>", "N", "years", "old"], [], ["a", "b"]]
    assert split.labels == [NO_LABEL] * 3
    assert split.filter_length(1, 10)[0].line_ids == [0, 2]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"1\tok\n0 no tab here\n", r"corpus\.txt:2: no TAB after the label; expected LABEL<TAB>sentence"),
        (b"1\tok\n1\tfine\n3\tbad label\n", r"corpus\.txt:3: label '3' is not an expected label; expected one of 0, 1"),
        (b"1\tok\n1\tcaf\xe9 bad byte\n", r"corpus\.txt:2: not UTF-8 \(byte 0xe9 at column 6\); expected UTF-8 text"),
    ],
)
def test_malformed_line_fails_naming_file_and_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=message) as err:
        read_corpus_file(path, LABELS, "fail", "data.train_file")
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_non_utf8_byte_in_unlabeled_corpus_names_the_line(tmp_path):
    path = write(tmp_path, b"a b\nc d\ne \x80 f\n")
    with pytest.raises(DataError, match=r"corpus\.txt:3: not UTF-8 \(byte 0x80 at column 3\)"):
        read_corpus_file(path, None, "fail", "data.valid_file")


def test_skip_policy_counts_malformed_lines_and_keeps_the_rest(tmp_path, caplog):
    path = write(tmp_path, b"1\tok\nno tab\n7\tbad label\n0\tfine\n1\t\xff\n")
    with caplog.at_level(logging.WARNING):
        split = read_corpus_file(path, LABELS, "skip", "data.train_file")
    assert split.malformed == 3
    assert split.line_ids == [0, 3]
    assert split.labels == [1, 0]
    assert "skipped 3 malformed lines" in caplog.text and "corpus.txt:2" in caplog.text


def test_missing_file_names_file_and_param(tmp_path):
    with pytest.raises(DataError, match=r"missing\.txt: file not found \(from data\.test_file\)"):
        read_corpus_file(tmp_path / "missing.txt", None, "fail", "data.test_file")


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_empty_corpus_is_named(tmp_path, content):
    path = write(tmp_path, content, "empty.txt")
    with pytest.raises(DataError, match=r"empty\.txt: empty corpus; expected at least one sentence \(from data\.train_file\)"):
        read_corpus_file(path, None, "fail", "data.train_file")


def test_corpus_with_only_malformed_lines_is_empty_under_skip(tmp_path):
    path = write(tmp_path, b"no tab\nalso none\n", "bad.txt")
    with pytest.raises(DataError, match=r"bad\.txt: empty corpus \(2 malformed lines skipped\)"):
        read_corpus_file(path, LABELS, "skip", "data.train_file")


def test_filter_and_head_report_what_they_leave_out(tmp_path):
    path = write(tmp_path, b"a\na b c\na b\na b c d e\nx y\n")
    split = read_corpus_file(path, None, "fail", "data.train_file")
    kept, dropped = split.filter_length(2, 3)
    assert (kept.line_ids, dropped) == ([1, 2, 4], 2)
    first, cut = kept.head(2)
    assert (first.line_ids, cut) == ([1, 2], 1)
    assert kept.head(None) == (kept, 0)


@pytest.fixture
def hub_style_folder(tmp_path, monkeypatch):
    """A dataset folder with train/validation/test Parquet files and a ClassLabel column.

    `datasets.load_dataset` takes such a folder exactly as it takes a hub id, so the hub path is
    exercised offline; its cache goes to tmp_path.
    """
    import datasets
    from datasets import ClassLabel, Dataset, Features, Value

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    for split in ("train", "validation", "test"):
        table = Dataset.from_dict({"text": ["good  food", "bad"], "label": [1, 0]}, features=features)
        table.to_parquet(str(tmp_path / "hub" / f"{split}.parquet"))
    return str(tmp_path / "hub")


def test_hub_dataset_maps_columns_and_class_label_names(hub_style_folder):
    from shortrun.data.corpus import load_hub_split

    split = load_hub_split(hub_style_folder, "valid", ["neg", "pos"], "fail")
    assert split.tokens == [["good", "food"], ["bad"]] and split.labels == [1, 0] and split.line_ids == [0, 1]
    assert load_hub_split(hub_style_folder, "test", None, "fail").labels == [NO_LABEL, NO_LABEL]
    with pytest.raises(DataError, match=r"hub\[validation\] row 0: label 'pos' is not an expected label; expected one of 0, 1"):
        load_hub_split(hub_style_folder, "valid", ["0", "1"], "fail")
    assert load_hub_split(hub_style_folder, "train", ["neg", "x"], "skip").malformed == 1
