"""Regenerate benchmarks/sentences.txt: 512 real English sentences from the standard library's docstrings.

Run once with Python 3.11; the output is committed so that the workload never changes.
The lengths follow the natural spread of documentation prose (a few words to ~120 tokens),
picked evenly across sorted lengths and then shuffled with a fixed seed.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
from pathlib import Path

MODULES = ["argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "functools", "http.client",
           "json", "logging", "os", "pathlib", "random", "re", "shutil", "sqlite3", "string", "subprocess",
           "tarfile", "textwrap", "threading", "unittest", "urllib.request", "zipfile", "statistics", "heapq",
           "itertools", "typing", "inspect", "pickle", "socket", "ssl", "xml.etree.ElementTree", "difflib"]
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def docstrings():
    for name in MODULES:
        module = importlib.import_module(name)
        yield inspect.getdoc(module) or ""
        for _, obj in sorted(vars(module).items()):
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == module.__name__:
                yield inspect.getdoc(obj) or ""


def sentences():
    seen = set()
    for doc in docstrings():
        for para in doc.split("\n\n"):
            if para.lstrip().startswith((">>>", "-", "*", ":", "..")) or "::" in para:
                continue
            text = " ".join(para.split())
            for s in SENTENCE.split(text):
                words = s.split()
                if 3 <= len(words) <= 90 and s[0].isupper() and s[-1] in ".!?" and s not in seen:
                    seen.add(s)
                    yield s


def main() -> None:
    pool = sorted(sentences(), key=lambda s: (len(s.split()), s))
    step = len(pool) / 512
    picked = [pool[int(i * step)] for i in range(512)]
    random.Random(0).shuffle(picked)
    out = Path(__file__).with_name("sentences.txt")
    out.write_text("\n".join(picked) + "\n", encoding="utf-8")
    print(f"wrote {len(picked)} of {len(pool)} sentences to {out}")


if __name__ == "__main__":
    main()
