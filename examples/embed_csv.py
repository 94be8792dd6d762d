"""Embed the reviews in a CSV with DistilBERT and write them to Parquet.

    python examples/embed_csv.py [INPUT.csv] [OUTPUT.parquet] [--column review] [--model distilbert-base-uncased]

The first run downloads the model (about 260 MB) into the distilframe cache
(DISTILFRAME_HOME, by default ~/.cache/distilframe). On a machine without network access,
pre-seed that cache (see the README); the error message says where the files go.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import distilframe

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", default=HERE / "reviews.csv", type=Path)
    parser.add_argument("output", nargs="?", default=HERE / "output" / "reviews_embeddings.parquet", type=Path)
    parser.add_argument("--column", default="review")
    parser.add_argument("--model", default="distilbert-base-uncased")
    args = parser.parse_args()

    df = pd.read_csv(args.input)
    out = df.distil.embed(args.column, model=args.model)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out.distil.to_parquet(args.output, overwrite=True)  # with its metadata; plain pd.read_parquet reads it

    X = distilframe.to_numpy(out[f"{args.column}_embedding"])
    embedded = ~np.isnan(X).any(axis=1)
    print(f"Embedded {embedded.sum()} of {len(df)} rows ({(~embedded).sum()} empty) with {args.model}: "
          f"{X.shape[1]} dimensions each.")
    print(f"Wrote {args.output}")

    # Nearest neighbour of the first review, by cosine similarity (the vectors are unit length),
    # leaving out verbatim copies of it.
    texts = df[args.column]
    query = int(np.flatnonzero(embedded)[0])
    scores = np.where(embedded & (texts != texts[query]).to_numpy(), np.nan_to_num(X) @ X[query], -np.inf)
    best = int(np.argmax(scores))
    print(f"Closest to {df[args.column][query]!r}:\n  {df[args.column][best]!r} (cosine {scores[best]:.3f})")


if __name__ == "__main__":
    try:
        main()
    except distilframe.DistilFrameError as e:  # one readable line and exit status 2, as the CLI does
        print(f"embed_csv: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
