"""Tokenization and the vocabulary: building, the fixed special ids, saving and reading corpus vocab files."""
from pathlib import Path

import pytest

from shortrun.data.tokenize import tokenize
from shortrun.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, build_vocab, read_vocab_file
from shortrun.errors import ConfigError, DataError
from shortrun.params import data_root

REPO = Path(__file__).resolve().parents[1]


def test_tokenize_splits_on_whitespace_and_strips():
    assert tokenize(" pierre <unk> N years old \n") == ["pierre", "<unk>", "N", "years", "old"]
    assert tokenize("a\tb  c") == ["a", "b", "c"]
    assert tokenize("   ") == []


def test_special_ids_are_fixed():
    vocab = Vocab(["the"])
    assert vocab.tokens[:4] == SPECIALS == ("<pad>", "<unk>", "<s>", "</s>")
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert vocab.encode(["the", "zebra", "<unk>", "<s>"]) == [4, UNK, UNK, BOS]


def test_build_orders_by_frequency_then_alphabetically():
    sentences = [["b", "a", "c"], ["c", "b"], ["c", "d"]]
    vocab = build_vocab(sentences)
    assert vocab.tokens[4:] == ("c", "b", "a", "d")


def test_build_caps_size_including_specials_and_applies_min_freq():
    sentences = [["x", "x", "y", "y", "z", "w"], ["x"]]
    assert build_vocab(sentences, max_size=6).tokens[4:] == ("x", "y")
    assert build_vocab(sentences, min_freq=2).tokens[4:] == ("x", "y")
    assert len(build_vocab(sentences, max_size=100)) == 8


def test_build_does_not_count_special_tokens_as_words():
    vocab = build_vocab([["<unk>", "<unk>", "a", "</s>"]])
    assert vocab.tokens == SPECIALS + ("a",)


def test_build_rejects_a_cap_without_room_for_words():
    with pytest.raises(ConfigError, match=r"^data\.max_vocab: 4 leaves no room"):
        build_vocab([["a"]], max_size=4)


def test_decode_stops_at_eos_and_drops_bos_and_pad():
    vocab = Vocab(["good", "food"])
    assert vocab.decode([BOS, 4, UNK, 5, EOS, 4, PAD]) == ["good", "<unk>", "food"]
    assert vocab.decode(vocab.encode(["food", "good"])) == ["food", "good"]


def test_save_load_round_trip(tmp_path):
    vocab = build_vocab([["the", "cat", "sat", "the"]])
    vocab.save(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:5] == ["<pad>", "<unk>", "<s>", "</s>", "the"]
    assert Vocab.load(tmp_path / "vocab.txt") == vocab


def test_load_rejects_a_file_without_our_specials(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("<pad>\n<s>\n</s>\n<unk>\nthe\n")
    with pytest.raises(DataError, match=r"vocab\.txt:2: expected special token '<unk>', got '<s>'"):
        Vocab.load(path)


def test_plain_vocab_file_is_remapped_to_our_special_ids(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("<pad>\n<s>\n</s>\n<unk>\nbest\ni\nhave\n")
    vocab = read_vocab_file(path)
    assert vocab.tokens == SPECIALS + ("best", "i", "have")
    assert read_vocab_file(path, max_size=5).tokens == SPECIALS + ("best",)


def test_token_id_vocab_file_is_read_in_id_order(tmp_path):
    path = tmp_path / "ptb.dict"
    path.write_text("<pad> 0\n<unk> 1\n<s> 2\n</s> 3\nof 5\nthe 4\n")
    assert read_vocab_file(path).tokens == SPECIALS + ("the", "of")


@pytest.mark.parametrize(
    "content, message",
    [
        ("a 0\nb\n", r"ptb\.dict:2: expected 'token id'"),
        ("a 0\nb 0\n", r"ptb\.dict:2: id 0 is also on line 1"),
        ("a\nb c\n", r"ptb\.dict:2: expected one token per line"),
        ("a\nb\na\n", r"ptb\.dict:3: token 'a' appears twice"),
        ("", r"ptb\.dict: empty vocabulary file"),
    ],
)
def test_malformed_vocab_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "ptb.dict"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_vocab_file(path)


def test_non_utf8_vocab_line_is_named(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"<pad>\nok\nbad\xff\n")
    with pytest.raises(DataError, match=r"vocab\.txt:3: not UTF-8 \(byte 0xff at column 4\)"):
        read_vocab_file(path)


def test_missing_vocab_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: file not found \(from data\.vocab_file\)"):
        read_vocab_file(tmp_path / "nope.txt")


def test_the_corpora_vocab_files_load_at_their_documented_sizes():
    root = data_root(REPO)
    yelp = read_vocab_file(root / "short_yelp" / "vocab.txt")
    ptb = read_vocab_file(root / "ptb" / "ptb.dict")
    assert len(yelp) == 8411 and yelp.tokens[4] == "best"
    assert len(ptb) == 10002 and ptb.tokens[4] == "the"
