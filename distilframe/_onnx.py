"""The int8 engine: the checkpoint's DistilBERT as an ONNX graph, its weights quantized, run by ONNX Runtime.

    checkpoint weights (numpy) ─► ONNX graph (onnx.helper; the packed-sequence mask of ``_engine``)
        ─► onnxruntime.quantization.quantize_dynamic: int8 weights with one scale per output channel,
           activations quantized per batch; the FFN output projections stay fp32
        ─► cached under ``<DISTILFRAME_HOME>/compiled/`` ─► an InferenceSession

Why ONNX Runtime: Paddle 3.x's default (PIR) predictor has no CPU int8 pass (its oneDNN pass list begins by
deleting quant/dequant ops), and the legacy-IR int8 route needs PaddleSlim's quantized programs; ONNX
Runtime's int8 kernels (VNNI / AMX-INT8 where the CPU has them, AVX2 otherwise) run this graph directly.

Why this quantization: on the trained all-MiniLM-L6-v2, onnxruntime's default dynamic int8 (one scale per
weight tensor) gives a per-row cosine to fp32 of 0.93 at worst; one scale per output channel gives 0.98;
keeping the FFN output projections (``linear2``, where trained weights' activation outliers live) in fp32
as well gives 0.991 (benchmarks/engines.py prints these on the machine it runs on).

The graph computes what ``_engine``'s packed encoder computes: a token attends to the tokens of its row
that carry the same sequence number, and its position counts the tokens of its sequence before it. The
classification head (pre_classifier, ReLU, classifier on the first token) runs in fp32 numpy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import _config as config
from . import _fs as fs
from ._checkpoint import Checkpoint, content_hash
from ._engine import PREFIX, load_state, paddlenlp_config
from .errors import CheckpointError

__all__ = ["ONNX_GRAPH_VERSION", "OnnxInt8Engine", "build_graph", "fp32_kept", "head_logits", "int8_model"]

# What the quantized graph computes: part of its cache key, and of the result cache's (the engine's graph_version).
ONNX_GRAPH_VERSION = 1
_INSTALL = 'precision="int8" needs ONNX Runtime: pip install "distilframe[int8]"'


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(_INSTALL, name=e.name) from e
    return onnx, onnxruntime


def build_graph(checkpoint: Checkpoint, state: dict[str, np.ndarray]) -> Any:
    """The encoder as an ONNX model: inputs ``input_ids`` and ``attention_mask`` (sequence numbers, 0 for
    padding), int64 [batch, length]; output ``hidden`` float32 [batch, length, hidden]."""
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
    head_dim = hidden // heads
    nodes, inits = [], []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(key: str) -> str:
        if key not in state:
            raise CheckpointError(f"{checkpoint.weights_path} has no {key!r}: not a complete DistilBERT.")
        return const(key, state[key])

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x: str, key: str, name: str) -> str:
        return node("Add", [node("MatMul", [x, weight(f"{key}.weight")], f"{name}.matmul"), weight(f"{key}.bias")],
                    name)

    def layer_norm(x: str, key: str, name: str) -> str:
        return node("LayerNormalization", [x, weight(f"{key}.weight"), weight(f"{key}.bias")], name, axis=-1,
                    epsilon=eps)

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
    x = node("Add", [node("Gather", [weight(e + "word_embeddings.weight"), "input_ids"], "words"),
                     node("Gather", [weight(e + "position_embeddings.weight"), positions], "places")], "embedded")
    x = layer_norm(x, e + "layer_norm", "embeddings")
    additive = node("Mul", [node("Sub", [node("Cast", [same], "same_f", to=TensorProto.FLOAT), const("onef", 1.0)],
                                 "same_m1"), const("big", 1e4)], "additive")
    mask = node("Unsqueeze", [additive, const("axis_h", [1], np.int64)], "mask")  # [batch, 1, query, key]
    split = const("split_shape", [0, 0, heads, head_dim], np.int64)
    merge = const("merge_shape", [0, 0, hidden], np.int64)
    scale = const("scale", 1.0 / np.sqrt(head_dim))
    for i in range(layers):
        k = f"{PREFIX}encoder.layers.{i}."
        a = f"layer{i}"

        def heads_of(y: str, what: str) -> str:
            return node("Transpose", [node("Reshape", [y, split], f"{a}.{what}_split")], f"{a}.{what}_heads",
                        perm=[0, 2, 1, 3])

        q = heads_of(node("Mul", [linear(x, k + "self_attn.q_proj", f"{a}.q"), scale], f"{a}.q_scaled"), "q")
        kk = node("Transpose", [node("Reshape", [linear(x, k + "self_attn.k_proj", f"{a}.k"), split], f"{a}.k_split")],
                  f"{a}.k_heads_t", perm=[0, 2, 3, 1])
        v = heads_of(linear(x, k + "self_attn.v_proj", f"{a}.v"), "v")
        scores = node("Add", [node("MatMul", [q, kk], f"{a}.scores_raw"), mask], f"{a}.scores")
        probs = node("Softmax", [scores], f"{a}.probs", axis=-1)
        context = node("Reshape", [node("Transpose", [node("MatMul", [probs, v], f"{a}.context_heads")],
                                        f"{a}.context_t", perm=[0, 2, 1, 3]), merge], f"{a}.context")
        attended = linear(context, k + "self_attn.out_proj", f"{a}.attn_out")
        x = layer_norm(node("Add", [x, attended], f"{a}.residual1"), k + "norm1", f"{a}.norm1")
        inner = linear(x, k + "linear1", f"{a}.ffn_in")
        if act == "gelu":  # exact (erf) GELU, as PaddleNLP's; ONNX Runtime fuses it
            erf = node("Erf", [node("Mul", [inner, const(f"{a}.rsqrt2", 1 / np.sqrt(2))], f"{a}.gelu_scaled")],
                       f"{a}.gelu_erf")
            inner = node("Mul", [node("Mul", [inner, const(f"{a}.half", 0.5)], f"{a}.gelu_half"),
                                 node("Add", [erf, const(f"{a}.onef", 1.0)], f"{a}.gelu_1p")], f"{a}.gelu")
        else:
            inner = node("Relu", [inner], f"{a}.relu")
        out = linear(inner, k + "linear2", f"{a}.ffn_out")
        x = layer_norm(node("Add", [x, out], f"{a}.residual2"), k + "norm2", f"{a}.norm2")
    nodes.append(helper.make_node("Identity", [x], ["hidden"], name="hidden"))
    graph = helper.make_graph(
        nodes, "distilbert", [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "length"])
                              for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def fp32_kept(model: Any) -> list[str]:
    """The MatMuls left in fp32: the FFN output projections (``layerN.ffn_out.matmul``)."""
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(".ffn_out.matmul")]


def int8_model(checkpoint: Checkpoint) -> Path:
    """The checkpoint's quantized ONNX model, built and quantized on first use (atomic, locked, cached)."""
    onnx, onnxruntime = _modules()
    key = f"{content_hash(checkpoint)}-onnxruntime{onnxruntime.__version__}-int8graph{ONNX_GRAPH_VERSION}"

    def build(tmp: Path) -> None:
        try:  # it imports ml_dtypes, which onnxruntime does not declare
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as e:
            raise ImportError(f"{_INSTALL} ({e})", name=e.name) from e

        from ._engine import PaddleEngine

        # The Paddle engine's checks, once per checkpoint: weights against the config, complete heads, and
        # which heads are a sentence classifier (a token-classification or QA head is not).
        has_classifier = PaddleEngine(checkpoint).has_classifier
        state = load_state(checkpoint)
        model = build_graph(checkpoint, state)
        head = {k: state[k] for k in _HEAD} if has_classifier else {}
        onnx.save(model, str(tmp / "fp32.onnx"))
        with _quiet_root_logger():  # the quantizer logs every node, and advice, with logging.info/warning
            quantize_dynamic(str(tmp / "fp32.onnx"), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8,
                             per_channel=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=fp32_kept(model))
        (tmp / "fp32.onnx").unlink()
        if head:
            np.savez(tmp / "head.npz", **{k.replace(".", "_"): v for k, v in head.items()})
        info = {"has_classifier": bool(head),
                "hidden_size": int(state[f"{PREFIX}embeddings.word_embeddings.weight"].shape[1]),
                "num_labels": int(head["classifier.weight"].shape[1]) if head else 0}
        (tmp / "info.json").write_text(json.dumps(info))

    return fs.build_once(config.home() / "compiled" / key, _complete, build)


def _complete(folder: Path) -> bool:
    if not (folder / "info.json").is_file() or not (folder / "int8.onnx").is_file() or fs.damaged(folder):
        return False
    return not json.loads((folder / "info.json").read_text())["has_classifier"] or (folder / "head.npz").is_file()


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence ONNX Runtime's quantizer, which logs through the root logger, and leave logging as it was: the
    disable level, and no handler added by the ``basicConfig`` its module-level ``logging.info`` calls run."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.manager.disable
    logging.disable(max(level, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


_HEAD = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")


class OnnxInt8Engine:
    """The int8 engine: ``hidden_states`` and ``logits`` as :class:`~distilframe._engine.PredictorEngine`'s."""

    precision = "int8"
    graph_version = f"onnx{ONNX_GRAPH_VERSION}"  # the result cache's key: never another graph's results

    def __init__(self, checkpoint: Checkpoint, *, num_threads: int | None = None) -> None:
        _, onnxruntime = _modules()
        self.checkpoint = checkpoint
        self.threads = num_threads or config.num_threads() or config.available_cores()
        self.folder = int8_model(checkpoint)
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
        self._head = None
        if self.has_classifier:
            with np.load(self.folder / "head.npz") as head:
                self._head = {k: head[k.replace(".", "_")] for k in _HEAD}
        self._lock = threading.Lock()

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 (batch, length, hidden); the mask may number packed sequences."""
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64)}
        with self._lock:
            return np.asarray(self._session.run(["hidden"], feeds)[0], dtype=np.float32)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Classification logits (batch, num_labels): the fp32 head on the int8 encoder's first token."""
        if self._head is None:
            raise RuntimeError("this checkpoint has no classification head")
        return head_logits(self.hidden_states(input_ids, attention_mask)[:, 0], self._head)


def head_logits(first: np.ndarray, head: dict[str, np.ndarray]) -> np.ndarray:
    """PaddleNLP's sequence-classification head on the first token's states: pre_classifier, ReLU, classifier."""
    inner = np.maximum(first @ head["pre_classifier.weight"] + head["pre_classifier.bias"], 0)
    return (inner @ head["classifier.weight"] + head["classifier.bias"]).astype(np.float32)
