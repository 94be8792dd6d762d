"""Texts to token ids, with the Rust ``tokenizers`` package.

The pipeline is the one Hugging Face builds for BERT/DistilBERT fast tokenizers
(BertNormalizer, BertPreTokenizer, WordPiece, ``[CLS] $A [SEP]``), built from
the checkpoint's own ``vocab.txt``. It follows BERT's original WordPiece, which
PaddleNLP's pure-Python tokenizer does not for Unicode symbols (it splits
emoji, ©, ® and ™ where BERT keeps them whole), and it is about 5x faster.

Truncation and windowing are done here, not by the library, so that the full
length of every text is known (for the truncation warning and per-row status).
A long text is either truncated (its first ``max_length - 1`` tokens and [SEP],
exactly what Hugging Face's ``truncation=True`` gives) or cut into overlapping
windows of ``max_length`` tokens, each with its own [CLS] and [SEP].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ._options import LONG_TEXT

__all__ = ["Encoded", "WordPieceTokenizer"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class Encoded:
    """Token ids of a list of texts, as model inputs of at most ``max_length`` tokens.

    ``ids[j]`` is input j, [CLS] and [SEP] included; ``owner[j]`` the text it comes
    from (one input per text when truncating, one per window when chunking);
    ``n_tokens[i]`` is the length of text i before truncation, [CLS] and [SEP] included.
    """

    ids: list[np.ndarray]
    owner: np.ndarray
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
        Lower-case (uncased models).
    strip_accents
        Remove accents; None follows ``do_lower_case``, as BERT does.
    tokenize_chinese_chars
        Put spaces around CJK characters, so that each is a word of its own.
    added_tokens
        Tokens added after training, as transformers records them (content, id, special,
        normalized, lstrip, rstrip, single_word); each must get its recorded id.

    Examples
    --------
    >>> tok = WordPieceTokenizer("vocab.txt", do_lower_case=True)  # doctest: +SKIP
    >>> tok.encode(["Hello world"], max_length=512).ids[0]  # doctest: +SKIP
    array([ 101, 7592, 2088,  102], dtype=int32)
    """

    def __init__(self, vocab_path: str | Path, *, do_lower_case: bool, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, added_tokens: Sequence[dict] = ()) -> None:
        from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        vocab = _read_vocab(Path(vocab_path))
        for token in ("[UNK]", "[CLS]", "[SEP]"):
            if token not in vocab:
                raise ValueError(f"{vocab_path} has no {token} token: is it a BERT WordPiece vocabulary?")
        tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents,
            lowercase=do_lower_case,
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
        for spec in sorted(added_tokens, key=lambda t: t["id"]):
            token = AddedToken(spec["content"], single_word=spec.get("single_word", False),
                               lstrip=spec.get("lstrip", False), rstrip=spec.get("rstrip", False),
                               normalized=spec.get("normalized", not spec.get("special", False)),
                               special=spec.get("special", False))
            (tok.add_special_tokens if spec.get("special") else tok.add_tokens)([token])
            if tok.token_to_id(spec["content"]) != spec["id"]:
                raise ValueError(
                    f"Added token {spec['content']!r} should have id {spec['id']} but gets "
                    f"{tok.token_to_id(spec['content'])}: the added tokens do not follow the vocabulary of "
                    f"{vocab_path} ({len(vocab)} tokens)."
                )
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.do_lower_case = do_lower_case

    def encode(self, texts: Sequence[str], *, max_length: int, long_text: str = "truncate",
               stride: int = 128) -> Encoded:
        """Tokenize ``texts`` into model inputs of at most ``max_length`` tokens.

        ``long_text="truncate"`` keeps a long text's first tokens and [SEP];
        ``"chunk"`` cuts it into windows of ``max_length`` tokens that overlap by
        ``stride`` tokens (capped at half a window), so that every token is read.
        """
        if max_length < 3:
            raise ValueError(f"Got max_length={max_length} but it must be at least 3 ([CLS], a token, [SEP]).")
        if long_text not in LONG_TEXT:
            raise ValueError(f"Got long_text={long_text!r} but expected 'truncate' or 'chunk'.")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        width = max_length - 2
        step = width - min(max(int(stride), 0), width // 2)
        ids: list[np.ndarray] = []
        owner: list[int] = []
        n_tokens = np.empty(len(encodings), dtype=np.int64)
        for i, enc in enumerate(encodings):
            row = np.asarray(enc.ids, dtype=np.int32)
            n_tokens[i] = len(row)
            if len(row) <= max_length:
                ids.append(row)
                owner.append(i)
            elif long_text == "truncate":
                ids.append(np.concatenate([row[: max_length - 1], [self.sep_id]]).astype(np.int32))
                owner.append(i)
            else:
                content = row[1:-1]
                for start in range(0, len(content), step):
                    ids.append(np.concatenate([[self.cls_id], content[start:start + width], [self.sep_id]])
                               .astype(np.int32))
                    owner.append(i)
                    if start + width >= len(content):
                        break
        return Encoded(ids=ids, owner=np.asarray(owner, dtype=np.int64), n_tokens=n_tokens)

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
