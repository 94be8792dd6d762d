"""Run a DistilBERT checkpoint with Paddle (imported through ``_paddle``, the one door to it).

Two Paddle engines with one interface (``hidden_states``, ``logits``), which ``_onnx.OnnxInt8Engine`` (int8,
ONNX Runtime) shares:

* ``PredictorEngine`` (the default): Paddle Inference with oneDNN, in fp32 or bf16.
  Each checkpoint is exported once (``paddle.jit.to_static``, dynamic batch and
  length) into ``<DISTILFRAME_HOME>/compiled/<content hash>-paddle<version>/`` and
  reused by every later process, which then needs neither PaddleNLP nor a model
  build: a fast cold start. With AMX, bf16 runs about 4.7x faster than fp32 on 2 cores,
  with AMD's AVX512-BF16 1.75x, and with Intel's AVX512-BF16 alone 0.77x
  (benchmarks/engines.py), so ``auto`` takes bf16 only where it is faster.
* ``PaddleEngine``: PaddleNLP's network in dygraph; it validates the weights and is
  what gets exported, and the fallback when export or the predictor fails.

The attention mask of ``hidden_states`` may hold sequence numbers instead of ones:
0 is padding, and tokens marked k attend only to the other tokens marked k of their
row, with positions counted from 0 at each sequence's first token. A 0/1 mask is the
usual one-sequence-per-row case; the executor packs several short texts into one
row this way, so that a batch of short texts is not mostly padding.

The network is PaddleNLP's ``DistilBertModel`` / ``DistilBertForSequenceClassification``,
the reference implementation of these weights: the same ``paddle.nn`` layers under the
same names, built here without importing PaddleNLP (``_distilbert``; tests/test_engine.py
checks it against PaddleNLP's classes bit for bit). Guarantees, whatever the load path:

* eval mode and ``paddle.no_grad()``: no dropout, no autograd graph;
* the attention mask is always passed (PaddleNLP would otherwise mask
  ``input_ids == pad_token_id``, which is wrong for a real [PAD] token in a text);
* every LayerNorm uses the checkpoint's epsilon (1e-12 for DistilBERT), never
  Paddle's default 1e-5, which PaddleNLP leaves in place on some load paths;
* weights are checked name by name and shape by shape before use.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import _config as config
from . import _fs as fs
from . import _paddle
from ._checkpoint import Checkpoint, content_hash
from ._config import available_cores, fast_bf16, native_bf16
from ._options import PRECISIONS
from .errors import CheckpointError, PrecisionWarning, check_finite, warn

__all__ = ["GRAPH_VERSION", "PREFIX", "WEIGHTS_CHECKED", "PaddleEngine", "PredictorEngine", "check_bf16",
           "checked_export", "export", "load_state",
           "paddlenlp_config", "resolve_precision"]

PREFIX = "distilbert."
_slow_bf16_lock = threading.Lock()
_slow_bf16_warned = False  # the warning of check_bf16 for bf16 slower than fp32, given once per process
_HEAD_KEYS = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")


def resolve_precision(precision: str | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"int8"``: ``"auto"`` is DISTILFRAME_PRECISION if set, else bf16 on a CPU where it is
    faster than fp32 (:func:`~distilframe._config.fast_bf16`), with no GPU and Paddle Inference's engine, else
    fp32. bf16 asked for on a CPU without native bf16 is refused, and where it is native but slower than fp32 it
    warns once (see :func:`check_bf16`); with DISTILFRAME_ENGINE=dygraph it runs fp32, with a warning."""
    source = f"precision={precision!r}"
    if precision is None or precision == "auto":
        precision = config.precision()
        source = f"DISTILFRAME_PRECISION={precision!r}"
        if precision == "auto":
            # PaddleNLP's dygraph model (DISTILFRAME_ENGINE=dygraph) runs fp32 only
            precision = "bf16" if fast_bf16() and not _paddle.gpu_visible() and config.engine() != "dygraph" \
                else "fp32"
            source = ""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"Got precision={precision!r} but expected 'auto', 'fp32', 'bf16' or 'int8'.")
    if precision == "bf16" and source and config.engine() != "dygraph":  # that engine runs fp32 (it warns)
        check_bf16(source)
    return precision


def check_bf16(source: str = "precision='bf16'") -> None:
    """ValueError when bf16 would not run natively: no AVX512-BF16 or AMX flag (and no GPU), unless
    ``DISTILFRAME_EMULATED_BF16=1``. oneDNN does not refuse it: on AVX-512 it emulates bf16 (the engines
    benchmark's bf16 row took over 10 minutes where fp32 takes 4 s, on a Xeon with AVX-512 VNNI), and on
    AVX2 it computes in fp32 (no speed-up, measured on an AMD EPYC).

    Where bf16 is native but slower than fp32 (Intel's AVX512-BF16 without AMX), it runs as asked, with one
    warning per process that says so (it still halves the weights' memory)."""
    global _slow_bf16_warned
    if _paddle.gpu_visible():
        return
    if native_bf16():
        if not fast_bf16():
            with _slow_bf16_lock:
                if _slow_bf16_warned:
                    return
                instead = ("unset DISTILFRAME_PRECISION (then auto means fp32 here)" if source.startswith("DISTILFRAME")
                           else "precision='fp32' or 'auto' (which means fp32 here) is faster, and exact")
                warn(f"{source} on {config.cpu_name()}: it has avx512_bf16 but no amx_bf16, and without AMX bf16 "
                     "measured 0.77x fp32's speed (an Intel Xeon, benchmarks/engines.py). Running bf16 as asked (it "
                     f"takes less memory); {instead}.", PrecisionWarning)
                _slow_bf16_warned = True  # after warn: under a warnings-as-errors filter each call raises
        return
    if config.emulated_bf16():
        return
    flags = config.cpu_flags()
    if not flags:  # no /proc/cpuinfo flags (macOS, Windows, ARM): unknown, so not refused
        return
    has = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f in flags]
    what = ("over 100x slower than fp32 (emulated on AVX-512)" if "avx512f" in flags
            else "computed in fp32 anyway (oneDNN ignores bf16 on AVX2): no faster")
    instead = ("unset DISTILFRAME_PRECISION or set it to fp32, auto or int8" if source.startswith("DISTILFRAME")
               else "use precision='fp32' (exact), 'auto' (bf16 only on CPUs that have it) or 'int8' (faster here, "
                    "less exact)")
    raise ValueError(
        f"Got {source} but {config.cpu_name()} has no native bf16: it lacks the {' and '.join(config.BF16_FLAGS)} "
        f"flags (it has {', '.join(has) or 'neither AVX2 nor AVX-512'}), so bf16 would be {what}. Instead, "
        f"{instead}. DISTILFRAME_EMULATED_BF16=1 allows it anyway, to test the bf16 path.")


def _distilbert(paddle: Any, cfg: dict[str, Any], eps: float) -> Any:
    """PaddleNLP's ``DistilBertModel``, or with ``num_labels`` its ``DistilBertForSequenceClassification``, for
    ``cfg`` (:func:`paddlenlp_config`): the same Paddle layers under the same names, in eval mode, with
    LayerNorm epsilon ``eps`` (PaddleNLP's ``init_weights`` sets 1e-12; its layers are built with 1e-5).

    Built from ``paddle.nn`` here rather than imported, because importing PaddleNLP takes 3 s (over a quarter
    of a first use's time; it pulls in its task, data and metrics packages, and scikit-learn) for three small
    classes around ``paddle.nn.TransformerEncoder``. tests/test_engine.py checks that the parameter names and
    shapes are PaddleNLP's and the outputs bit for bit the same, for both classes and both activations.
    Dropout is left out: it is the identity in eval mode.
    """
    nn = paddle.nn
    hidden = int(cfg["hidden_size"])

    class BertEmbeddings(nn.Layer):  # words + positions, no token types
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(int(cfg["vocab_size"]), hidden)
            self.position_embeddings = nn.Embedding(int(cfg["max_position_embeddings"]), hidden)
            self.layer_norm = nn.LayerNorm(hidden, epsilon=eps)

        def forward(self, input_ids: Any, position_ids: Any = None) -> Any:
            if position_ids is None:
                ones = paddle.ones_like(input_ids, dtype="int64")
                position_ids = paddle.cumsum(ones, axis=-1) - ones
            return self.layer_norm(self.word_embeddings(input_ids) + self.position_embeddings(position_ids))

    class DistilBertModel(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = BertEmbeddings()
            layer = nn.TransformerEncoderLayer(hidden, int(cfg["num_attention_heads"]), int(cfg["intermediate_size"]),
                                               dropout=0.0, activation=str(cfg["hidden_act"]), attn_dropout=0.0,
                                               act_dropout=0, layer_norm_eps=eps)
            self.encoder = nn.TransformerEncoder(layer, int(cfg["num_hidden_layers"]))

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:  # a 0/1 mask
            dtype = self.encoder.layers[0].norm1.weight.dtype
            mask = (1.0 - attention_mask.unsqueeze(axis=[1, 2]).astype(dtype)) * -1e4
            return self.encoder(self.embeddings(input_ids=input_ids), mask)

    class DistilBertForSequenceClassification(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.distilbert = DistilBertModel()
            self.pre_classifier = nn.Linear(hidden, hidden)
            self.activation = nn.ReLU()
            self.classifier = nn.Linear(hidden, int(cfg["num_labels"]))

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            first = self.distilbert(input_ids=input_ids, attention_mask=attention_mask)[:, 0]
            return self.classifier(self.activation(self.pre_classifier(first)))

    model = DistilBertForSequenceClassification() if cfg.get("num_labels") else DistilBertModel()
    model.eval()
    return model


def _packed_encoder(paddle: Any, model: Any) -> Any:
    """``model`` (a PaddleNLP DistilBertModel) behind an attention mask of sequence numbers (module docstring).

    It calls the model's own embeddings and encoder layers; only the mask and the position ids are
    built here: a token attends to the tokens of its row that carry the same number (an additive
    -1e4 elsewhere, as PaddleNLP's own mask, which underflows to an exact 0 after the softmax), and
    its position is the number of tokens of its sequence before it. With a 0/1 mask this is
    PaddleNLP's forward for every non-padding token.
    """

    class PackedEncoder(paddle.nn.Layer):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.embeddings = model.embeddings
            self.encoder = model.encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            seq = attention_mask.astype("int64")
            same = seq.unsqueeze(2) == seq.unsqueeze(1)  # [batch, query, key]
            # Counted in integers: in bf16 a float sum is exact only up to 256, and positions reach 511.
            before = paddle.tril(same.astype("int64")).sum(axis=-1)  # own sequence's tokens up to this one
            positions = (before - 1) * (seq > 0).astype("int64")  # padding: position 0, never past the table
            hidden = self.embeddings(input_ids=input_ids, position_ids=positions)
            mask = ((same.astype("float32") - 1.0) * 1e4).astype(hidden.dtype).unsqueeze(1)  # [batch, 1, query, key]
            return self.encoder(hidden, mask)

    return PackedEncoder(model)


class PaddleEngine:
    """A loaded DistilBERT on Paddle, ready to run batches of token ids.

    Parameters
    ----------
    checkpoint
        A resolved checkpoint (``_resolve.resolve``).

    Attributes
    ----------
    has_classifier
        True when the weights include a trained sequence-classification head.
    num_labels
        Number of classes of that head (0 without one).
    packs_logits
        False: ``logits`` takes one text per row (the executor packs only embeddings for it).
    token_budget
        None: batches of the executor's default size (``_batches.DEFAULT_TOKEN_BUDGET``).
    pack_width
        None: packed rows of the executor's default width (``_batches.PACK_WIDTH``).
    """

    packs_logits = False
    token_budget = None
    pack_width = None

    def __init__(self, checkpoint: Checkpoint, *, num_threads: int | None = None) -> None:
        paddle = _paddle.with_threads(num_threads)

        self.checkpoint = checkpoint
        self.paddle_version = paddle.__version__
        state = load_state(checkpoint)
        architectures = " ".join(checkpoint.config.get("architectures") or [])
        if "pre_classifier.weight" not in state or any(
                kind in architectures for kind in ("TokenClassification", "QuestionAnswering", "MultipleChoice")):
            # Another kind of head (token classification, QA, multiple choice): not a sentence
            # classifier; embed() ignores it.
            state = {k: v for k, v in state.items() if k.startswith(PREFIX)}
        head = [k for k in _HEAD_KEYS if k in state]
        if head and len(head) != len(_HEAD_KEYS):
            raise CheckpointError(
                f"{checkpoint.weights_path} has an incomplete classification head: it has {', '.join(head)} "
                f"but not {', '.join(k for k in _HEAD_KEYS if k not in state)}."
            )
        self.has_classifier = bool(head)
        self.num_labels = int(state["classifier.weight"].shape[1]) if self.has_classifier else 0
        cfg = paddlenlp_config(checkpoint, state, self.num_labels)

        # LazyGuard: the layers are built without a random initialisation, which the checkpoint's weights
        # would overwrite anyway (PaddleNLP's own classes draw one even under LazyGuard: 1.6 s for
        # distilbert-base).
        eps = float(checkpoint.config.get("layer_norm_eps", 1e-12))
        with paddle.no_grad(), paddle.LazyGuard():
            model = _distilbert(paddle, cfg, eps)
            encoder = model.distilbert if self.has_classifier else model
            if not self.has_classifier:
                state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX) and k not in _IGNORED}
        with paddle.no_grad():
            _check_and_set(model, state, checkpoint)
        del state
        self._paddle = paddle
        self._model = model
        self._encoder = _packed_encoder(paddle, encoder)
        self.hidden_size = int(cfg["hidden_size"])
        # Paddle dygraph layers are not documented as thread-safe: one forward at a time.
        self._lock = threading.Lock()

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 of shape (batch, length, hidden); the mask may number packed
        sequences (module docstring)."""
        return self._run(self._encoder, input_ids, attention_mask)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Classification logits, float32 of shape (batch, num_labels)."""
        if not self.has_classifier:
            raise RuntimeError("this checkpoint has no classification head")
        return self._run(self._model, input_ids, attention_mask)

    def _run(self, layer: Any, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        paddle = self._paddle
        with self._lock, paddle.no_grad():
            ids = paddle.to_tensor(np.ascontiguousarray(input_ids, dtype=np.int64))
            mask = paddle.to_tensor(np.ascontiguousarray(attention_mask, dtype=np.int64))
            out = layer(input_ids=ids, attention_mask=mask)
            return np.asarray(out.numpy(), dtype=np.float32)


def load_state(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The weights with encoder keys under ``distilbert.``, whatever prefix the file used."""
    try:
        raw = _paddle.load_state(checkpoint.weights_path)
    except _paddle.UnsafeWeights as e:
        raise CheckpointError(f"{e}. Load only weights you trust; re-save these with paddle.save(state_dict) "
                              "of tensors or arrays, or as model.safetensors (README: Trust).") from None
    except Exception as e:
        fix = ("delete it and it will be downloaded again" if checkpoint.spec is not None
               else "replace it with a good copy of the checkpoint")
        raise CheckpointError(
            f"Could not read {checkpoint.weights_path}: {type(e).__name__}: {e}. "
            f"The file is damaged or not a Paddle state dict: {fix}."
        ) from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{checkpoint.weights_path} holds a {type(raw).__name__}, expected a state dict.")
    state: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if key.startswith(("embeddings.", "encoder.")):
            key = PREFIX + key
        state[key] = np.asarray(value)
        check_finite(state[key], repr(checkpoint.name), f"{key!r} ({checkpoint.weights_path})")  # once per file
    return state


# PaddleNLP's DistilBertConfig defaults (tests/test_engine.py compares them).
_CONFIG_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12,
                    "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512, "pad_token_id": 0}

# Tensors some conversions carry that DistilBERT does not use (BERT's token types).
_IGNORED = (f"{PREFIX}embeddings.token_type_embeddings.weight", f"{PREFIX}embeddings.position_ids")


def paddlenlp_config(checkpoint: Checkpoint, state: dict[str, np.ndarray], num_labels: int) -> dict[str, Any]:
    """PaddleNLP config arguments, every one present: sizes the config leaves out are read from the weights,
    and the rest default as in PaddleNLP's ``DistilBertConfig``."""
    cfg = checkpoint.config
    out = {k: cfg[k] for k in _CONFIG_DEFAULTS if k in cfg}
    shapes = {
        "vocab_size": (f"{PREFIX}embeddings.word_embeddings.weight", 0),
        "max_position_embeddings": (f"{PREFIX}embeddings.position_embeddings.weight", 0),
        "intermediate_size": (f"{PREFIX}encoder.layers.0.linear1.weight", 1),
        "hidden_size": (f"{PREFIX}embeddings.word_embeddings.weight", 1),
    }
    for key, (name, axis) in shapes.items():
        if key not in out and name in state:
            out[key] = int(state[name].shape[axis])
    if "num_hidden_layers" not in out:
        out["num_hidden_layers"] = len({k.split(".")[3] for k in state if k.startswith(f"{PREFIX}encoder.layers.")})
    out = {**_CONFIG_DEFAULTS, **out}
    hidden, heads = int(out["hidden_size"]), int(out["num_attention_heads"])
    if heads < 1 or hidden % heads:
        raise CheckpointError(
            f"The config of {checkpoint.name!r} has hidden_size={hidden} and num_attention_heads={heads}: "
            "the hidden size must be a multiple of the number of heads."
        )
    out["hidden_dropout_prob"] = out["attention_probs_dropout_prob"] = 0.0  # eval anyway
    if num_labels:
        out["num_labels"] = num_labels
    return out


def _check_and_set(model: Any, state: dict[str, np.ndarray], checkpoint: Checkpoint) -> None:
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    prefix = PREFIX if any(k.startswith(PREFIX) for k in expected) else ""
    missing = [k for k in expected if k not in state]
    wrong = [k for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    # Encoder weights the config has no place for (more layers than it says) mean another model.
    unused = [k for k in state if k.startswith(prefix + "encoder.") and k not in expected]
    if missing or wrong or unused:
        files, named = _weights_named(checkpoint)
        details = []
        if missing:
            details.append(f"{len(missing)} missing weights (e.g. {', '.join(named(k)[0] for k in missing[:3])})")
        if wrong:
            shown = [f"{named(k)[0]}: file {named(k, tuple(state[k].shape))[1]} vs config {named(k, expected[k])[1]}"
                     for k in wrong[:3]]
            details.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(shown)})")
        if unused:
            details.append(f"{len(unused)} encoder weights the config does not describe (e.g. "
                           f"{', '.join(named(k)[0] for k in unused[:3])})")
        raise CheckpointError(f"The weights in {files}: {'; '.join(details)}. Check that the config and the weights "
                              "come from the same model.")
    model.set_state_dict({k: state[k] for k in expected})


def _weights_named(checkpoint: Checkpoint) -> tuple[str, Any]:
    """(the files an error about the weights names, a function naming a weight and its shape): a Hugging Face
    folder's own file, names and shapes when the checkpoint is its conversion, else the checkpoint's."""
    from ._convert import HF_WEIGHTS, as_converted_from, converted_from, source_style

    source = converted_from(checkpoint.config)
    where = [source / f for f in HF_WEIGHTS if (source / f).is_file()][:1] if source is not None else []
    if not where:
        return (f"{checkpoint.weights_path} do not fit the DistilBERT described by its config",
                lambda key, shape=(): (key, shape))
    style = source_style(source, where[0])

    def named(key: str, shape: tuple[int, ...] = ()) -> tuple[str, tuple[int, ...]]:
        full = key if key.startswith((PREFIX, "pre_classifier.", "classifier.")) else PREFIX + key
        return as_converted_from(full, shape, style)

    return (f"{where[0]} do not fit the DistilBERT described by {source / 'config.json'} (converted into "
            f"{checkpoint.path})", named)


# ------------------------------------------------------------------------------ Paddle Inference

class PredictorEngine:
    """A checkpoint exported to a static graph and run by Paddle Inference with oneDNN.

    Parameters
    ----------
    checkpoint
        A resolved checkpoint.
    precision
        ``"fp32"`` or ``"bf16"`` (see :func:`resolve_precision`).
    num_threads
        CPU threads; default as for :class:`PaddleEngine`.

    The export is cached by the checkpoint's content hash and the Paddle version; a GPU build of
    Paddle with a visible GPU runs the same graph on the GPU (fp32), which cannot be tested here. Its
    ``logits`` take one text per row (``packs_logits`` is False): the exported head reads each row's first token.
    """

    packs_logits = False
    token_budget = None  # the executor's default
    pack_width = None

    def __init__(self, checkpoint: Checkpoint, *, precision: str, num_threads: int | None = None) -> None:
        self.paddle = _paddle.with_threads(num_threads)
        self.paddle_version = self.paddle.__version__
        self.checkpoint = checkpoint
        self.precision = precision
        self.threads = num_threads or config.num_threads() or available_cores()
        self.folder = export(checkpoint, num_threads=self.threads)
        info = json.loads((self.folder / "info.json").read_text())
        self.has_classifier = bool(info["has_classifier"])
        self.num_labels = int(info["num_labels"])
        self.hidden_size = int(info["hidden_size"])
        self._predictors: dict[str, Any] = {}
        self._on_gpu = _paddle.gpu_visible()  # no oneDNN state there: no shape to keep (KEEP_SHAPE_TOKENS)
        self._lock = threading.Lock()
        self._predictor("encoder")  # fail here, at load time, not in the middle of a job

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 of shape (batch, length, hidden); the mask may number packed
        sequences (module docstring)."""
        return self._run("encoder", input_ids, attention_mask)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Classification logits, float32 of shape (batch, num_labels)."""
        if not self.has_classifier:
            raise RuntimeError("this checkpoint has no classification head")
        return self._run("classifier", input_ids, attention_mask)

    def _predictor(self, kind: str):
        if kind not in self._predictors:
            inference = self.paddle.inference
            cfg = inference.Config(str(self.folder / f"{kind}.json"), str(self.folder / f"{kind}.pdiparams"))
            cfg.disable_glog_info()
            if _paddle.gpu_visible():
                cfg.enable_use_gpu(256, 0)
            else:
                cfg.disable_gpu()
                cfg.enable_mkldnn()
                cfg.set_cpu_math_library_num_threads(self.threads)
                cfg.set_mkldnn_cache_capacity(SHAPE_CACHE)
                if self.precision == "bf16":
                    cfg.enable_mkldnn_bfloat16()
            predictor = inference.create_predictor(cfg)
            inputs = [predictor.get_input_handle(n) for n in predictor.get_input_names()]
            output = predictor.get_output_handle(predictor.get_output_names()[0])
            self._predictors[kind] = (predictor, inputs, output)
        return self._predictors[kind]

    def _run(self, kind: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with self._lock:  # a predictor runs one batch at a time
            global _last_shape
            predictor, inputs, output = self._predictor(kind)
            rows, width = input_ids.shape
            last = _last_shape
            if self._on_gpu or (kind == "classifier" and last[1] > self.checkpoint.max_positions):
                last = None  # the classifier's positions count every token of its row, padding too
            shape = kept_shape(last, rows, width, KEEP_SHAPE_TOKENS[self.precision])
            for handle, array in zip(inputs, (input_ids, attention_mask)):
                array = np.ascontiguousarray(array, dtype=np.int64)
                if shape != array.shape:  # padding, mask 0: no token of the batch attends to it
                    array = np.pad(array, ((0, shape[0] - rows), (0, shape[1] - width)))
                handle.reshape(shape)
                handle.copy_from_cpu(array)
            predictor.run()
            _last_shape = shape
            out = np.asarray(output.copy_to_cpu(), dtype=np.float32)
            return out[:rows, :width] if out.ndim == 3 else out[:rows]


def kept_shape(last: tuple[int, int] | None, rows: int, width: int, keep: int) -> tuple[int, int]:
    """The input shape to run a batch of ``rows`` x ``width`` tokens in: the shape of the batch before it where
    that holds it with at most ``keep`` more padded tokens, else its own."""
    if last is not None and rows <= last[0] and width <= last[1] and last[0] * last[1] - rows * width <= keep:
        return last
    return rows, width


# Input shapes whose oneDNN state a predictor keeps. Paddle's default keeps about ten, and each holds its own
# reordered copy of every linear layer's weights (163 MB for distilbert-base), so a job over distinct texts,
# whose batches come in many shapes, grew by 1.6 GB in its first ten batches. Keeping one shape costs a job no
# speed (the weights are reordered again only when the shape changes: 48.9 s against 49.4 s over 60 batches of
# 30 shapes) and RSS after 192 shapes is 1.2 GB instead of 3.3 GB (benchmarks/file_memory.py). A short warm call
# whose shape differs from the call before paid the reorder alone: 62.9 ms in fp32 against 14.8 ms for the same
# shape (AMX Xeon, 2 cores); keeping four shapes, four in turn took 23.7 ms and 480 MB more (README).
SHAPE_CACHE = 1
# So a batch may take up to this many padded tokens more (mask 0: kept_shape) to run in the shape of the batch
# before it, rather than pay that reorder (distilbert-base, AMX Xeon: about 28 ms in fp32 and 35 ms in bf16).
# benchmarks/warm_calls.py (same CPU, 2 cores; off against on in one run): one different sentence per call 1.97x
# faster in fp32 (49.8 -> 25.3 ms) and 3.17x in bf16 (48.0 -> 15.1 ms); 8-24 sentences per call, whose batches
# differ by a row, 0.99x in fp32 and 1.50x in bf16, where 256 gave 1.35x and 512 1.20x in another run; in fp32
# 128 ran those 0.91x (512: 0.72x): a padded row costs fp32 about what the reorder does. Jobs 0.99-1.03x. The
# embeddings agree to 4e-8 in fp32 and 3e-4 in bf16 (oneDNN rounds other GEMM shapes differently; on
# all-MiniLM-L6-v2, 1.4e-7 and 7e-4): a text's result depends on the batch before it as on its batch neighbours.
# It needs no memory: the shape run is the one kept. Paddle keeps it once per process, for every predictor (they
# share one session of its oneDNN cache), so the shape to keep is the last one any predictor ran.
KEEP_SHAPE_TOKENS = {"fp32": 64, "bf16": 128}
_last_shape: tuple[int, int] = (0, 0)  # (0, 0): none yet

# What the exported graphs compute (their inputs' meaning): part of the export's cache key, so that a
# change here never reuses an older export (and the result cache never serves its results).
# 2: the encoder takes sequence numbers as its mask. 3: positions counted in integers (bf16 was wrong past 256).
GRAPH_VERSION = 3


def export(checkpoint: Checkpoint, num_threads: int | None = None) -> Path:
    """The folder of the checkpoint's exported graphs, exporting them on first use (atomic, locked)."""
    paddle = _paddle.paddle()
    # PaddleNLP's version stays in the key although the graph no longer comes from PaddleNLP's classes: the
    # graph is the same, so exports made before are reused rather than made again beside them.
    key = (f"{content_hash(checkpoint)}-paddle{paddle.__version__}-paddlenlp{_paddle.paddlenlp_version()}"
           f"-graph{GRAPH_VERSION}")

    def build(tmp: Path) -> None:
        dygraph = PaddleEngine(checkpoint, num_threads=num_threads)  # validates the weights against the config
        InputSpec = paddle.static.InputSpec

        specs = [InputSpec([None, None], "int64", "input_ids"), InputSpec([None, None], "int64", "attention_mask")]
        graphs = {"encoder": dygraph._encoder}
        if dygraph.has_classifier:
            graphs["classifier"] = dygraph._model
        with _paddle.quiet_imports(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
            for kind, layer in graphs.items():
                static = paddle.jit.to_static(layer, input_spec=specs, full_graph=True)
                paddle.jit.save(static, str(tmp / kind))
        info = {"has_classifier": dygraph.has_classifier, "num_labels": dygraph.num_labels,
                "hidden_size": dygraph.hidden_size, "paddle": paddle.__version__, "weights_checked": WEIGHTS_CHECKED}
        (tmp / "info.json").write_text(json.dumps(info))

    return fs.build_once(config.home() / "compiled" / key, _complete, build)


def _complete(folder: Path) -> bool:
    return checked_export(folder) and not fs.damaged(folder)


# What an export's weights were checked for when it was built (info.json): an export from before a check is made
# again, once, without a new cache key (the result cache keeps its entries). 1: no NaN or infinite values.
WEIGHTS_CHECKED = 1


def checked_export(folder: Path) -> bool:
    """An export folder whose info.json says its weights had every check of this version (``WEIGHTS_CHECKED``)."""
    info = fs.read_json(folder / "info.json")
    return isinstance(info, dict) and info.get("weights_checked") == WEIGHTS_CHECKED
