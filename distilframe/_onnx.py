"""The int8 engine: the checkpoint's DistilBERT as an ONNX graph with int8 projections, run by ONNX Runtime.

    checkpoint weights (numpy) ─► ONNX graph (onnx.helper; the packed-sequence mask of ``_engine``): every
        projection's weights in int8 with one scale per output channel, its input quantized per token
        ─► cached under ``<DISTILFRAME_HOME>/compiled/`` ─► an InferenceSession

Why ONNX Runtime: Paddle 3.x's default (PIR) predictor has no CPU int8 pass (its oneDNN pass list begins by
deleting quant/dequant ops), and the legacy-IR int8 route needs PaddleSlim's quantized programs; ONNX
Runtime's int8 kernels (VNNI / AMX-INT8 where the CPU has them, AVX2 otherwise) run this graph directly.

Why this quantization (benchmarks/int8_activations.py measures it on the trained all-MiniLM-L6-v2): ONNX
Runtime's ``quantize_dynamic`` quantizes a projection's whole input with one scale per batch, so one token
with an outlier activation (trained weights have them, mostly entering the FFN output projections) costs
every token of the batch its precision: per-row cosine to fp32 0.93 at worst with its defaults, 0.99 only
with the FFN output projections left in fp32 (distilframe's int8 before, at about fp32's speed). One scale
per token keeps 0.994 with every projection in int8, at about 1.35x that earlier scheme's speed on the same
graph (fused Q/K/V, attention and GELU).

The graph computes what ``_engine``'s packed encoder computes: a token attends to the tokens of its row
that carry the same sequence number, and its position counts the tokens of its sequence before it
(``build_graph(..., int8=False)``, the same graph in fp32, is tested against Paddle). The classification
head (pre_classifier, ReLU, classifier, in fp32) runs in the graph on each sequence's first token, so
classification rows can be packed too. It runs there rather than in numpy: numpy's BLAS threads keep
spinning after each product, and on 2 cores they halved the speed of ONNX Runtime's next batches.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from . import _config as config
from . import _fs as fs
from ._batches import INT8_PACK_WIDTH, INT8_TOKEN_BUDGET
from ._checkpoint import Checkpoint, content_hash
from ._engine import PREFIX, WEIGHTS_CHECKED, checked_export, load_state, paddlenlp_config
from ._pool import first_tokens
from .errors import CheckpointError

__all__ = ["MIN_ONNXRUNTIME", "ONNX_GRAPH_VERSION", "OnnxInt8Engine", "build_graph", "check_version", "int8_model",
           "weight_range"]

# What the quantized graph computes: part of its cache key, and of the result cache's (the engine's graph_version).
ONNX_GRAPH_VERSION = 3
_INSTALL = 'precision="int8" needs ONNX Runtime: pip install "distilframe[int8]"'


# Older releases' MultiHeadAttention computes this graph's packed rows wrongly (measured: NaN with 1.20.1,
# rows after the first off by 0.1 with 1.21.0; 1.21.1 to 1.32 exact).
MIN_ONNXRUNTIME = (1, 21, 1)


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(_INSTALL, name=e.name) from e
    check_version(onnxruntime.__version__)
    return onnx, onnxruntime


def check_version(version: str) -> None:
    """ImportError for an ONNX Runtime older than :data:`MIN_ONNXRUNTIME`, which would compute wrong results."""
    parts = [int(m.group()) if (m := re.match(r"\d+", p)) else 0 for p in (version.split(".") + ["0"] * 3)[:3]]
    if tuple(parts) < MIN_ONNXRUNTIME:
        need = ".".join(map(str, MIN_ONNXRUNTIME))
        raise ImportError(f'precision="int8" needs ONNX Runtime {need} or newer, but {version} is installed (its '
                          f'fused attention computes this graph wrongly): pip install -U "onnxruntime>={need}"',
                          name="onnxruntime")


def build_graph(checkpoint: Checkpoint, state: dict[str, np.ndarray], *, int8: bool = False,
                weight_max: int = 127, classifier: bool = False) -> Any:
    """The encoder as an ONNX model: inputs ``input_ids`` and ``attention_mask`` (sequence numbers, 0 for
    padding), int64 [batch, length]; output ``hidden`` float32 [batch, length, hidden]. With ``classifier``,
    also the input ``first`` (int64 [sequences]: each sequence's first token, as an index into the flattened
    [batch x length] tokens, ``_pool.first_tokens``) and the output ``logits`` (float32 [sequences, labels]:
    PaddleNLP's head, pre_classifier, ReLU and classifier, in fp32 on those tokens).

    Token states are kept as one [tokens, hidden] matrix between layers; Q, K and V are one projection; the
    attention is ONNX Runtime's MultiHeadAttention with the packed-sequence mask as its additive bias. With
    ``int8``, every projection (FFN outputs included) multiplies int8 weights, one scale per output channel,
    by its input quantized per token (one scale per token: an outlier token costs only its own precision),
    in ONNX Runtime's u8s8 integer GEMM (``MatMulIntegerToFloat``); the rest stays fp32. Weights span
    ±``weight_max``: 127, or 63 for CPUs without VNNI (:func:`weight_range`)."""
    onnx, _ = _modules()
    from onnx import TensorProto, helper, numpy_helper

    cfg = paddlenlp_config(checkpoint, state, 0)
    hidden, heads, layers = int(cfg["hidden_size"]), int(cfg.get("num_attention_heads", 12)), int(
        cfg["num_hidden_layers"])
    act = str(cfg.get("hidden_act", "gelu"))
    if act not in ("gelu", "relu"):
        raise CheckpointError(f"precision='int8' supports the gelu and relu activations; {checkpoint.name!r} uses "
                              f"{act!r}: use precision='fp32'.")
    eps = float(checkpoint.config.get("layer_norm_eps", 1e-12))
    nodes, inits = [], []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(key: str) -> np.ndarray:
        if key not in state:
            raise CheckpointError(f"{checkpoint.weights_path} has no {key!r}: not a complete DistilBERT.")
        return np.asarray(state[key], dtype=np.float32)

    def node(op: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain, **attrs))
        return name

    quantized: dict[str, tuple[str, str]] = {}

    def project(x: str, w: np.ndarray, name: str) -> str:
        """x [tokens, in] @ w [in, out], without the bias."""
        if not int8:
            return node("MatMul", [x, const(f"{name}.weight", w)], f"{name}.matmul")
        if x not in quantized:  # once per input: Q, K and V share it
            absmax = node("ReduceMax", [node("Abs", [x], f"{x}.abs")], f"{x}.absmax", axes=[-1], keepdims=1)
            scale = node("Max", [node("Mul", [absmax, const(f"{x}.by127", 1 / 127)], f"{x}.scale127"),
                                 const(f"{x}.tiny", 1e-12)], f"{x}.scale")  # [tokens, 1]
            flat = node("Reshape", [scale, const(f"{x}.flat", [-1], np.int64)], f"{x}.scales")
            zero = node("Cast", [node("Add", [node("Mul", [flat, const(f"{x}.zero", 0.0)], f"{x}.zeros"),
                                              const(f"{x}.c128", 128.0)], f"{x}.c128s")], f"{x}.zero_points",
                        to=TensorProto.UINT8)
            quantized[x] = node("QuantizeLinear", [x, flat, zero], f"{x}.u8", axis=0), scale
        xq, scale = quantized[x]
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / weight_max  # per output channel
        wq = np.clip(np.rint(w / w_scale), -weight_max, weight_max).astype(np.int8)
        product = node("MatMulIntegerToFloat", [xq, const(f"{name}.weight_int8", wq, np.int8),
                                                const(f"{name}.one", 1.0), const(f"{name}.weight_scale", w_scale),
                                                const(f"{name}.x_zero", 128, np.uint8)],
                       f"{name}.matmul_int8", domain="com.microsoft")
        return node("Mul", [product, scale], f"{name}.matmul")

    def linear(x: str, key: str, name: str) -> str:
        return node("Add", [project(x, weight(f"{key}.weight"), name), const(f"{name}.bias", weight(f"{key}.bias"))],
                    name)

    def layer_norm(x: str, key: str, name: str) -> str:
        return node("LayerNormalization", [x, const(f"{name}.gamma", weight(f"{key}.weight")),
                                           const(f"{name}.beta", weight(f"{key}.bias"))], name, axis=-1, epsilon=eps)

    # the mask of sequence numbers -> which tokens attend to which, and each token's position
    same = node("Equal", [node("Unsqueeze", ["attention_mask", const("axis2", [2], np.int64)], "seq_q"),
                          node("Unsqueeze", ["attention_mask", const("axis1", [1], np.int64)], "seq_k")], "same")
    same_int = node("Cast", [same], "same_int", to=TensorProto.INT64)
    before = node("ReduceSum", [node("Trilu", [same_int], "lower", upper=0), const("last", [-1], np.int64)],
                  "before", keepdims=0)
    present = node("Cast", [node("Greater", ["attention_mask", const("zero", 0, np.int64)], "is_token")],
                   "present", to=TensorProto.INT64)
    positions = node("Mul", [node("Sub", [before, const("one", 1, np.int64)], "before_1"), present], "positions")
    e = PREFIX + "embeddings."
    x = node("Add", [node("Gather", [const("word_embeddings", weight(e + "word_embeddings.weight")), "input_ids"],
                          "words"),
                     node("Gather", [const("position_embeddings", weight(e + "position_embeddings.weight")),
                                     positions], "places")], "embedded")
    x = node("Reshape", [layer_norm(x, e + "layer_norm", "embeddings"), const("tokens_by_hidden", [-1, hidden],
                                                                               np.int64)], "embeddings_flat")
    additive = node("Mul", [node("Sub", [node("Cast", [same], "same_f", to=TensorProto.FLOAT), const("onef", 1.0)],
                                 "same_m1"), const("big", 1e4)], "additive")
    mask = node("Unsqueeze", [additive, const("axis_h", [1], np.int64)], "mask")  # [batch, 1, query, key]
    batch_length_hidden = node("Concat", [node("Shape", ["input_ids"], "batch_length"),
                                          const("hidden_size", [hidden], np.int64)], "batch_length_hidden", axis=0)
    for i in range(layers):
        k = f"{PREFIX}encoder.layers.{i}."
        a = f"layer{i}"
        qkv = project(x, np.concatenate([weight(f"{k}self_attn.{p}_proj.weight") for p in "qkv"], axis=1), f"{a}.qkv")
        nodes.append(helper.make_node("Split", [qkv, const(f"{a}.thirds", [hidden] * 3, np.int64)],
                                      [f"{a}.{p}" for p in "qkv"], name=f"{a}.split", axis=1))
        q, kk, v = (node("Reshape", [f"{a}.{p}", batch_length_hidden], f"{a}.{p}_3d", allowzero=1) for p in "qkv")
        bias = const(f"{a}.qkv_bias", np.concatenate([weight(f"{k}self_attn.{p}_proj.bias") for p in "qkv"]))
        context = node("MultiHeadAttention", [q, kk, v, bias, "", mask], f"{a}.attention", domain="com.microsoft",
                       num_heads=heads)
        context = node("Reshape", [context, const(f"{a}.flat", [-1, hidden], np.int64)], f"{a}.context")
        attended = linear(context, k + "self_attn.out_proj", f"{a}.attn_out")
        x = layer_norm(node("Add", [x, attended], f"{a}.residual1"), k + "norm1", f"{a}.norm1")
        inner = linear(x, k + "linear1", f"{a}.ffn_in")
        if act == "gelu":  # exact (erf) GELU, as PaddleNLP's
            inner = node("Gelu", [inner], f"{a}.gelu", domain="com.microsoft")
        else:
            inner = node("Relu", [inner], f"{a}.relu")
        out = linear(inner, k + "linear2", f"{a}.ffn_out")
        x = layer_norm(node("Add", [x, out], f"{a}.residual2"), k + "norm2", f"{a}.norm2")
    nodes.append(helper.make_node("Reshape", [x, batch_length_hidden], ["hidden"], name="hidden", allowzero=1))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "length"])
              for n in ("input_ids", "attention_mask")]
    outputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", hidden])]
    if classifier:
        first = node("Gather", [x, "first"], "first_states", axis=0)
        inner = node("Relu", [node("Add", [node("MatMul", [first, const("pre_classifier.w", weight(
            "pre_classifier.weight"))], "pre_classifier.matmul"), const("pre_classifier.b", weight(
                "pre_classifier.bias"))], "pre_classifier")], "pre_classifier.relu")
        nodes.append(helper.make_node("Add", [node("MatMul", [inner, const("classifier.w", weight(
            "classifier.weight"))], "classifier.matmul"), const("classifier.b", weight("classifier.bias"))],
            ["logits"], name="logits"))
        inputs.append(helper.make_tensor_value_info("first", TensorProto.INT64, ["sequences"]))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                     ["sequences", int(weight("classifier.weight").shape[1])]))
    graph = helper.make_graph(nodes, "distilbert", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def weight_range() -> int:
    """The int8 weights' range on this CPU: ±127 with VNNI or AMX-INT8, else ±63. Without them ONNX Runtime's
    u8s8 GEMM (AVX2's vpmaddubsw) adds two products of a uint8 activation (up to 255) and an int8 weight in
    16 bits, which saturates above 32,767; 2 x 255 x 63 stays below it (ONNX Runtime's quantizer calls this
    reduce_range)."""
    return 127 if config.int8_dot_products() else 63


def int8_model(checkpoint: Checkpoint, weight_max: int | None = None) -> Path:
    """The checkpoint's quantized ONNX model, built and quantized on first use (atomic, locked, cached); weights
    span ±``weight_max`` (default :func:`weight_range`)."""
    onnx, onnxruntime = _modules()
    weight_max = weight_max or weight_range()
    key = (f"{content_hash(checkpoint)}-onnxruntime{onnxruntime.__version__}-int8graph{ONNX_GRAPH_VERSION}"
           f"-w{weight_max}")

    def build(tmp: Path) -> None:
        from ._engine import PaddleEngine

        # The Paddle engine's checks, once per checkpoint: weights against the config, complete heads, and
        # which heads are a sentence classifier (a token-classification or QA head is not).
        has_classifier = PaddleEngine(checkpoint).has_classifier
        state = load_state(checkpoint)
        onnx.save(build_graph(checkpoint, state, int8=True, weight_max=weight_max, classifier=has_classifier),
                  str(tmp / "int8.onnx"))
        info = {"has_classifier": has_classifier,
                "hidden_size": int(state[f"{PREFIX}embeddings.word_embeddings.weight"].shape[1]),
                "num_labels": int(state["classifier.weight"].shape[1]) if has_classifier else 0,
                "weights_checked": WEIGHTS_CHECKED}
        (tmp / "info.json").write_text(json.dumps(info))

    return fs.build_once(config.home() / "compiled" / key, _complete, build)


def _complete(folder: Path) -> bool:
    return checked_export(folder) and (folder / "int8.onnx").is_file() and not fs.damaged(folder)


class OnnxInt8Engine:
    """The int8 engine: ``hidden_states`` as :class:`~distilframe._engine.PredictorEngine`'s; ``logits`` one row per
    sequence of packed rows (``packs_logits``), where Paddle's engines give one per row."""

    precision = "int8"
    packs_logits = True  # the head runs here, on each sequence's first token: classification rows can be packed
    token_budget = INT8_TOKEN_BUDGET  # smaller batches than Paddle's (measured: _batches)
    pack_width = INT8_PACK_WIDTH  # and narrower packed rows

    def __init__(self, checkpoint: Checkpoint, *, num_threads: int | None = None) -> None:
        _, onnxruntime = _modules()
        self.checkpoint = checkpoint
        self.threads = num_threads or config.num_threads() or config.available_cores()
        self.weight_max = weight_range()
        self.graph_version = f"onnx{ONNX_GRAPH_VERSION}-w{self.weight_max}"  # the result cache's key
        self.folder = int8_model(checkpoint, self.weight_max)
        info = json.loads((self.folder / "info.json").read_text())
        self.has_classifier = bool(info["has_classifier"])
        self.num_labels = int(info["num_labels"])
        self.hidden_size = int(info["hidden_size"])
        self.paddle_version = f"onnxruntime {onnxruntime.__version__}"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(self.folder / "int8.onnx"), options,
                                                     providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def _run(self, output: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64), "attention_mask": mask}
        if self.has_classifier:  # the head's input: each sequence's first token (none when only embedding)
            feeds["first"] = first_tokens(mask) if output == "logits" else np.zeros(0, np.int64)
        with self._lock:
            return np.asarray(self._session.run([output], feeds)[0], dtype=np.float32)

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 (batch, length, hidden); the mask may number packed sequences."""
        return self._run("hidden", input_ids, attention_mask)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Classification logits (sequences, num_labels): the fp32 head on each sequence's first token, from the
        int8 encoder, in the graph. Rows may pack several texts (``packs_logits``): one row of logits per
        sequence, row by row, then by sequence number, as embeddings are pooled."""
        if not self.has_classifier:
            raise RuntimeError("this checkpoint has no classification head")
        return self._run("logits", input_ids, attention_mask)
