import numpy as np
import pytest

from distilframe.testing import make_vocab
from distilframe._tokens import WordPieceTokenizer


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    out = {}
    for cased in (False, True):
        path = root / f"{'cased' if cased else 'uncased'}.txt"
        path.write_text("\n".join(make_vocab(cased)) + "\n", encoding="utf-8")
        out[cased] = path
    return out


def ids_of(tokens, cased=False):
    vocab = {t: i for i, t in enumerate(make_vocab(cased))}
    return [vocab[t] for t in tokens]


def test_uncased_lowercases_and_strips_accents(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    assert tok.tokens("The CAT, xélp!") == ["[CLS]", "the", "cat", ",", "x", "##e", "##l", "##p", "!", "[SEP]"]
    encoded = tok.encode(["The CAT, xélp!"], max_length=512)
    assert encoded.ids[0].tolist() == ids_of(tok.tokens("The CAT, xélp!"))
    assert encoded.n_tokens.tolist() == [10]


def test_cased_keeps_case_and_accents(vocab_files):
    tok = WordPieceTokenizer(vocab_files[True], do_lower_case=False)
    assert tok.tokens("The Cat é") == ["[CLS]", "The", "Cat", "é", "[SEP]"]


def test_cjk_characters_are_split_and_unknown_words_become_unk(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    assert tok.tokens("中文日本") == ["[CLS]", "中", "文", "日", "本", "[SEP]"]
    assert tok.tokens("zzzzz" * 30) == ["[CLS]", "[UNK]", "[SEP]"]  # over 100 characters: one [UNK]
    assert tok.tokens("Ω") == ["[CLS]", "[UNK]", "[SEP]"]


def test_literal_special_tokens_are_kept_whole(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    assert tok.tokens("a [MASK] cat") == ["[CLS]", "a", "[MASK]", "cat", "[SEP]"]


def test_truncation_keeps_the_start_and_sep_and_reports_full_length(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    text = " ".join(["cat"] * 20)
    encoded = tok.encode([text, "dog"], max_length=8)
    assert encoded.ids[0].tolist() == ids_of(["[CLS]"] + ["cat"] * 6 + ["[SEP]"])
    assert encoded.n_tokens.tolist() == [22, 3]
    assert encoded.lengths.tolist() == [8, 3]
    with pytest.raises(ValueError, match="max_length=1"):
        tok.encode(["x"], max_length=1)


def test_bad_vocab_files_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer(empty, do_lower_case=True)
    no_cls = tmp_path / "nocls.txt"
    no_cls.write_text("[PAD]\n[UNK]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no \[CLS\]"):
        WordPieceTokenizer(no_cls, do_lower_case=True)


def test_ids_are_int32_arrays(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    encoded = tok.encode(["a", "the cat"], max_length=512)
    assert all(isinstance(x, np.ndarray) and x.dtype == np.int32 for x in encoded.ids)
    assert tok.pad_id == 0 and tok.cls_id == 2 and tok.sep_id == 3


def test_chunk_mode_cuts_overlapping_windows_that_cover_every_token(vocab_files):
    tok = WordPieceTokenizer(vocab_files[False], do_lower_case=True)
    words = ["cat", "dog", "the", "a", "movie"] * 6  # 30 tokens between [CLS] and [SEP]
    full = tok.encode([" ".join(words)], max_length=512).ids[0]
    encoded = tok.encode([" ".join(words), "dog"], max_length=12, long_text="chunk", stride=4)
    assert encoded.n_tokens.tolist() == [32, 3]
    windows = [w for w, o in zip(encoded.ids, encoded.owner) if o == 0]
    assert encoded.owner.tolist() == [0] * len(windows) + [1]
    content = full[1:-1].tolist()
    step = 10 - 4
    for k, w in enumerate(windows):
        assert w[0] == tok.cls_id and w[-1] == tok.sep_id and len(w) <= 12
        assert w[1:-1].tolist() == content[k * step: k * step + 10]
    assert windows[-1][1:-1].tolist()[-1] == content[-1]  # the last token is read
    assert len(windows) == 5  # starts 0, 6, 12, 18, 24 (the last reaches the end)
    assert tok.encode(["cat dog"], max_length=12, long_text="chunk").owner.tolist() == [0]
    with pytest.raises(ValueError, match="long_text='split'"):
        tok.encode(["x"], max_length=12, long_text="split")
