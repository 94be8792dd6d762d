"""Texts to token ids, with the Rust ``tokenizers`` package.

The pipeline is the one Hugging Face builds for BERT/DistilBERT fast tokenizers
(BertNormalizer, BertPreTokenizer, WordPiece, ``[CLS] $A [SEP]``), built from
the checkpoint's own ``vocab.txt``. It follows BERT's original WordPiece, which
PaddleNLP's pure-Python tokenizer does not for Unicode symbols (it splits
emoji, ©, ® and ™ where BERT keeps them whole), and it is about 5x faster.

Truncation is done here, not by the library, so that the full length of every
text is known (for the truncation warning and per-row diagnostics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Encoded", "WordPieceTokenizer"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class Encoded:
    """Token ids of a list of texts, truncated to ``max_length``.

    ``ids[i]`` holds the ids of text i including [CLS] and [SEP];
    ``n_tokens[i]`` is its length before truncation.
    """

    ids: list[np.ndarray]
    n_tokens: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer for one vocabulary and casing.

    Parameters
    ----------
    vocab_path
        A ``vocab.txt`` with one token per line; the line number is the id.
    do_lower_case
        Lower-case and strip accents (uncased models).

    Examples
    --------
    >>> tok = WordPieceTokenizer("vocab.txt", do_lower_case=True)  # doctest: +SKIP
    >>> tok.encode(["Hello world"], max_length=512).ids[0]  # doctest: +SKIP
    array([ 101, 7592, 2088,  102], dtype=int32)
    """

    def __init__(self, vocab_path: str | Path, *, do_lower_case: bool) -> None:
        from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        vocab = _read_vocab(Path(vocab_path))
        for token in ("[UNK]", "[CLS]", "[SEP]"):
            if token not in vocab:
                raise ValueError(f"{vocab_path} has no {token} token: is it a BERT WordPiece vocabulary?")
        tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab.get("[PAD]", 0)
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0",
            pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)],
        )
        # As in the fast tokenizer: literal special tokens in a text are matched, not split.
        tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.vocab_size = len(vocab)
        self.do_lower_case = do_lower_case

    def encode(self, texts: Sequence[str], *, max_length: int) -> Encoded:
        """Tokenize ``texts``; texts over ``max_length`` tokens keep their first tokens and [SEP]."""
        if max_length < 2:
            raise ValueError(f"Got max_length={max_length} but it must be at least 2 ([CLS] and [SEP]).")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        ids: list[np.ndarray] = []
        n_tokens = np.empty(len(encodings), dtype=np.int64)
        for i, enc in enumerate(encodings):
            row = np.asarray(enc.ids, dtype=np.int32)
            n_tokens[i] = len(row)
            if len(row) > max_length:
                row = np.concatenate([row[: max_length - 1], [self.sep_id]]).astype(np.int32)
            ids.append(row)
        return Encoded(ids=ids, n_tokens=n_tokens)

    def tokens(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, with [CLS] and [SEP] (for inspection)."""
        return self._tok.encode(text).tokens


def _read_vocab(path: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            # As transformers' load_vocab: strip the newline only; a repeated token keeps its last id.
            vocab[line.rstrip("\n")] = i
    if not vocab:
        raise ValueError(f"{path} is empty: expected one WordPiece token per line.")
    return vocab
