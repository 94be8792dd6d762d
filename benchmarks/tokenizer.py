"""Tokenizer speed and fidelity: distilframe (Rust `tokenizers`) against PaddleNLP's DistilBertTokenizer.

    python benchmarks/tokenizer.py

Speed: 10,000 real English sentences (benchmarks/sentences.txt, cycled), with a
30,522-token uncased WordPiece vocabulary learned from them; best of 3 runs each.
Fidelity: on the 2,300-string stress corpus of the tests (accents, CJK, emoji,
symbols, control characters, ...), how many strings each tokenizer turns into
ids different from transformers' DistilBertTokenizerFast (the reference), when
transformers is installed (`pip install -e ".[test]"`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from distilframe._tokens import WordPieceTokenizer  # noqa: E402
from throughput import sentences, train_vocab  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    base = sentences()
    texts = [base[i % len(base)] for i in range(10_000)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.txt").write_text("\n".join(train_vocab(base)) + "\n", encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))

        ours = WordPieceTokenizer(folder / "vocab.txt", do_lower_case=True)
        from distilframe._paddle import quiet_imports as _quiet_imports

        with _quiet_imports():
            from paddlenlp.transformers import DistilBertTokenizer
        paddle_tok = DistilBertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)

        rows = [
            ("distilframe (Rust tokenizers)", lambda: ours.encode(texts, max_length=512)),
            ("PaddleNLP DistilBertTokenizer", lambda: paddle_tok.batch_encode(texts, max_length=512,
                                                                               truncation=True)),
        ]
        reference = None
        try:
            from transformers import DistilBertTokenizerFast

            reference = DistilBertTokenizerFast.from_pretrained(str(folder))
            rows.append(("transformers DistilBertTokenizerFast",
                         lambda: reference(texts, truncation=True, max_length=512)))
        except ImportError:
            pass

        print(f"speed: {len(texts):,} sentences, vocabulary of 30,522 tokens, best of 3")
        print()
        print(f"| {'tokenizer':<38} | {'sentences/s':>11} | {'vs PaddleNLP':>12} |")
        print(f"|{'-' * 40}|{'-' * 13}|{'-' * 14}|")
        timings = [(label, best_of(fn)) for label, fn in rows]
        paddle_time = dict(timings)["PaddleNLP DistilBertTokenizer"]
        for label, seconds in timings:
            print(f"| {label:<38} | {len(texts) / seconds:>11,.0f} | {paddle_time / seconds:>11.1f}x |")

        if reference is not None:
            from tokenizer_corpus import corpus

            stress = corpus()
            want = reference(stress, truncation=True, max_length=512)["input_ids"]
            got_ours = ours.encode(stress, max_length=512).ids
            got_paddle = paddle_tok.batch_encode(stress, max_length=512, truncation=True)["input_ids"]
            diff_ours = sum(a.tolist() != b for a, b in zip(got_ours, want))
            diff_paddle = sum(list(a) != b for a, b in zip(got_paddle, want))
            print()
            print(f"fidelity: strings of the {len(stress):,}-string stress corpus whose ids differ from "
                  "transformers' DistilBertTokenizerFast")
            print(f"  distilframe: {diff_ours}    PaddleNLP: {diff_paddle}")


if __name__ == "__main__":
    main()
