"""The notebook run panel: its throughput next to the accessor's, and how long the kernel waits meanwhile.

    python benchmarks/panel.py [--rows 2048]

The panel runs on a background thread. Paddle Inference holds Python's GIL while it runs a batch,
so the kernel's own thread (where notebook cells and button clicks are handled) gets its turn
between batches. This measures, on the throughput workload (distilbert-base dimensions), the
delay the kernel sees: a 5 ms sleep on the main thread, repeated while the panel runs, and how
much later than 5 ms it returns.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from throughput import base_checkpoint, cpu_name, sentences  # noqa: E402

import distilframe  # noqa: E402
from distilframe.widgets import RunPanel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2048)
    args = parser.parse_args()
    texts = sentences()
    df = pd.DataFrame({"text": [texts[i % len(texts)] + f" ({i})" for i in range(args.rows)]})  # all distinct
    with tempfile.TemporaryDirectory(prefix="distilframe-bench-") as tmp:
        os.environ["DISTILFRAME_HOME"] = str(Path(tmp) / "home")  # an empty result cache: the model is timed
        folder = base_checkpoint(Path(tmp) / "base", texts)
        df.iloc[:64].distil.embed("text", model=folder, cache=False)  # load and warm up
        distilframe.set_default_model(folder)

        start = time.perf_counter()
        df.distil.embed("text", model=folder, cache=False, progress=False)
        accessor_s = time.perf_counter() - start

        from distilframe import _result_cache

        real = _result_cache.default_cache
        _result_cache.default_cache = lambda: None  # time the model, not the result cache
        try:
            panel = RunPanel(df)
            delays = []
            start = time.perf_counter()
            panel.run()
            while panel.busy:
                t = time.perf_counter()
                time.sleep(0.005)
                delays.append(time.perf_counter() - t - 0.005)
            panel_s = time.perf_counter() - start
        finally:
            _result_cache.default_cache = real
        assert panel.state == "done", panel.message.value
        delays_ms = np.array(delays) * 1000
    print(f"machine: {cpu_name()}; {args.rows} distinct rows, distilbert-base dimensions, default precision")
    print()
    print("| path | rows/s | kernel delay median | p90 | max |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| df.distil.embed (blocks the kernel) | {args.rows / accessor_s:,.0f} | — | — | — |")
    print(f"| df.distil.panel() Run (background thread) | {args.rows / panel_s:,.0f} | "
          f"{np.median(delays_ms):.0f} ms | {np.percentile(delays_ms, 90):.0f} ms | {delays_ms.max():.0f} ms |")


if __name__ == "__main__":
    main()
