"""Throughput of ``Series.distil.embed`` on 512 real English sentences, distilbert-base dimensions.

    python benchmarks/throughput.py [--repeat 3]

The model is random (no weights can be downloaded here) but has distilbert-base's
shape: 6 layers, 768 hidden, 12 heads, 3072 feed-forward, 30522-token vocabulary.
Its WordPiece vocabulary is trained on the workload itself and padded to 30522
entries, so token counts are close to, not equal to, BERT's; tokens/s is the fair
figure across tokenizers. Prints a table; rows are measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import distilframe  # noqa: E402,F401
from distilframe._config import available_cores  # noqa: E402
from distilframe._manager import get_model  # noqa: E402
from distilframe.testing import write_checkpoint  # noqa: E402

BASE = dict(hidden=768, layers=6, heads=12, ffn=3072, positions=512)
VOCAB_SIZE = 30522


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The CPU features that decide the engine's speed (bf16 native or not, int8 dot products), from
    /proc/cpuinfo: what every figure must be quoted with."""
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "flags unknown"
    return " ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)


def paddle_version() -> str:
    import paddle

    return paddle.__version__


def sentences() -> list[str]:
    return (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines()


def train_vocab(texts: list[str]) -> list[str]:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials))
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    return learned + [f"[unused{i}]" for i in range(VOCAB_SIZE - len(learned))]


def base_checkpoint(folder: Path, texts: list[str]) -> Path:
    return write_checkpoint(folder, seed=0, vocab=train_vocab(texts), weight_std=0.02, **BASE)


def measure(series: pd.Series, repeat: int, **options) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        series.distil.embed(progress=False, cache=False, **options)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per row (default 3)")
    args = parser.parse_args()

    texts = sentences()
    series = pd.Series(texts, name="text")
    with tempfile.TemporaryDirectory(prefix="distilframe-bench-") as tmp:
        folder = base_checkpoint(Path(tmp) / "base", texts)
        t0 = time.perf_counter()
        model = get_model(folder)
        load = time.perf_counter() - t0
        n_tokens = int(model.tokenizer.encode(texts, max_length=512).n_tokens.sum())
        series.distil.embed(model=folder, progress=False)  # warm-up: first shapes

        rows = [("distilframe embed (defaults)", dict()),
                ("distilframe embed, batch_size=16", dict(batch_size=16))]
        print(f"workload: {len(texts)} sentences, {n_tokens} tokens "
              f"(median {int(statistics.median(model.tokenizer.encode(texts, max_length=512).n_tokens))} per sentence); "
              f"model load {load:.1f} s")
        print(f"machine: {cpu_name()} ({cpu_flags()}), {os.cpu_count()} cores, {available_cores()} threads for Paddle, "
              f"python {platform.python_version()}, paddle {paddle_version()}")
        print()
        print(f"| {'engine':<34} | {'sentences/s':>11} | {'tokens/s':>9} | {'best s':>7} |")
        print(f"|{'-' * 36}|{'-' * 13}|{'-' * 11}|{'-' * 9}|")
        for label, options in rows:
            best = min(measure(series, args.repeat, model=folder, **options))
            print(f"| {label:<34} | {len(texts) / best:>11.1f} | {n_tokens / best:>9.0f} | {best:>7.2f} |")


if __name__ == "__main__":
    main()
