"""Token ids identical to transformers' DistilBertTokenizerFast, for each registered model's settings."""

import json

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from conftest import reference_module
from distilframe._tokens import WordPieceTokenizer
from tokenizer_corpus import corpus

DistilBertTokenizerFast = reference_module("transformers").DistilBertTokenizerFast
pytestmark = pytest.mark.reference

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# (name, do_lower_case, vocabulary size, strip_accents, tokenize_chinese_chars): the settings of the
# registered models first, then the other settings a tokenizer_config.json can ask for.
SETTINGS = [
    ("uncased", True, 4000, None, True),  # distilbert-base-uncased, the SST-2 models: lower-case, strip accents
    ("cased", False, 4000, None, True),  # distilbert-base-cased
    ("multilingual-cased", False, 8000, None, True),  # renmada/distilbert-base-multilingual-cased: CJK split
    ("uncased-keep-accents", True, 4000, False, True),
    ("cased-strip-accents", False, 4000, True, True),
    ("no-cjk-split", True, 4000, None, False),
]


@pytest.fixture(scope="module")
def texts():
    out = corpus()
    assert len(out) >= 2000
    return out


def vocabulary(texts, lower, size):
    """A WordPiece vocabulary learned from the corpus: small enough that many words split or become [UNK]."""
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lower)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts[::2], WordPieceTrainer(vocab_size=size, special_tokens=SPECIALS))
    return [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]


@pytest.mark.parametrize("name,lower,size,strip,cjk", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_ids_match_the_fast_tokenizer(tmp_path, texts, name, lower, size, strip, cjk):
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary(texts, lower, size)) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower, "strip_accents": strip,
                                                                "tokenize_chinese_chars": cjk}))
    reference = DistilBertTokenizerFast.from_pretrained(str(tmp_path))
    ours = WordPieceTokenizer(tmp_path / "vocab.txt", do_lower_case=lower, strip_accents=strip,
                              tokenize_chinese_chars=cjk)

    want_full = reference(texts, truncation=False)["input_ids"]
    want_512 = reference(texts, truncation=True, max_length=512)["input_ids"]
    got = ours.encode(texts, max_length=512)
    mismatches = [i for i, (a, b) in enumerate(zip(got.ids, want_512)) if a.tolist() != b]
    assert not mismatches, [(texts[i][:60], ours.tokens(texts[i])[:20]) for i in mismatches[:5]]
    assert got.n_tokens.tolist() == [len(x) for x in want_full]
    assert sum(len(x) > 512 for x in want_full) >= 4  # the corpus does reach past the limit
    unk = reference.convert_tokens_to_ids("[UNK]")
    assert sum(unk in x for x in want_full) > 50  # and the vocabulary does not cover everything
