"""Run a DistilBERT checkpoint with Paddle: the only module that imports paddle and paddlenlp.

The network is PaddleNLP's own ``DistilBertModel`` /
``DistilBertForSequenceClassification``, so results are those of the reference
implementation of these weights. Guarantees, whatever the load path:

* eval mode and ``paddle.no_grad()``: no dropout, no autograd graph;
* the attention mask is always passed (PaddleNLP would otherwise mask
  ``input_ids == pad_token_id``, which is wrong for a real [PAD] token in a text);
* every LayerNorm uses the checkpoint's epsilon (1e-12 for DistilBERT), never
  Paddle's default 1e-5, which PaddleNLP leaves in place on some load paths;
* weights are checked name by name and shape by shape before use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from .checkpoints import Checkpoint
from .errors import CheckpointError

__all__ = ["PaddleEngine", "available_cores", "save_state"]

_PREFIX = "distilbert."
_HEAD_KEYS = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")


def available_cores() -> int:
    """Cores this process may run on (CPU affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _import_paddle(num_threads: int | None) -> Any:
    """Import paddle and give it a sensible thread count.

    ``import paddle`` sets OMP_NUM_THREADS=1 when it is unset (and prints a warning when it
    is set higher), which would run every matmul on one core. So the variable is left alone
    and the count is set after the import, the same for every model of the process:
    ``num_threads``, else ``config.num_threads()`` (DISTILFRAME_NUM_THREADS, or the user's
    OMP_NUM_THREADS), else every core available to the process. Measured on 2 cores:
    the same speed as OMP_NUM_THREADS=2, 1.5x that of one thread.
    """
    with _quiet_imports():
        try:
            import paddle
        except ImportError as e:
            raise ImportError(f"PaddlePaddle could not be imported ({e}). Install it: pip install 'paddlepaddle>=3.3,<3.4'.") from e

    paddle.base.core.set_num_threads(num_threads or config.num_threads() or available_cores())
    return paddle


def _import_paddlenlp_models() -> tuple[Any, Any, Any]:
    with _quiet_imports():
        try:
            from paddlenlp.transformers import (
                DistilBertConfig,
                DistilBertForSequenceClassification,
                DistilBertModel,
            )
        except ImportError as e:
            raise ImportError(
                f"PaddleNLP could not be imported ({e}). paddlenlp 2.8.1 works only with "
                "huggingface_hub<0.26, aistudio-sdk<0.3 and datasets<3; another package may have upgraded "
                "them. Fix: pip install 'huggingface_hub<0.26' 'aistudio-sdk<0.3' 'datasets<3'."
            ) from e
    return DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel


@contextlib.contextmanager
def _quiet_imports():
    # Paddle and PaddleNLP warn about their own build tooling on import, and the `datasets` package
    # they import logs which torch it found: nothing a user can act on, and noise in ETL logs.
    import logging

    datasets_log = logging.getLogger("datasets")
    level = datasets_log.level
    datasets_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache found")
            warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
            yield
    finally:
        datasets_log.setLevel(level)


class PaddleEngine:
    """A loaded DistilBERT on Paddle, ready to run batches of token ids.

    Parameters
    ----------
    checkpoint
        A resolved checkpoint (``distilframe.checkpoints.resolve``).

    Attributes
    ----------
    has_classifier
        True when the weights include a trained sequence-classification head.
    num_labels
        Number of classes of that head (0 without one).
    """

    def __init__(self, checkpoint: Checkpoint, *, num_threads: int | None = None) -> None:
        paddle = _import_paddle(num_threads)
        DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel = _import_paddlenlp_models()

        self.checkpoint = checkpoint
        state = _load_state(paddle, checkpoint)
        architectures = " ".join(checkpoint.config.get("architectures") or [])
        if "pre_classifier.weight" not in state or any(
                kind in architectures for kind in ("TokenClassification", "QuestionAnswering", "MultipleChoice")):
            # Another kind of head (token classification, QA, multiple choice): not a sentence
            # classifier; embed() ignores it.
            state = {k: v for k, v in state.items() if k.startswith(_PREFIX)}
        head = [k for k in _HEAD_KEYS if k in state]
        if head and len(head) != len(_HEAD_KEYS):
            raise CheckpointError(
                f"{checkpoint.weights_path} has an incomplete classification head: it has {', '.join(head)} "
                f"but not {', '.join(k for k in _HEAD_KEYS if k not in state)}."
            )
        self.has_classifier = bool(head)
        self.num_labels = int(state["classifier.weight"].shape[1]) if self.has_classifier else 0
        cfg = _paddlenlp_config(checkpoint, state, self.num_labels)

        # LazyGuard: the layers are built without PaddleNLP's random initialisation, which the
        # checkpoint's weights would overwrite anyway (measured: 1.1 GB -> see benchmarks, and faster).
        with paddle.no_grad(), paddle.LazyGuard():
            if self.has_classifier:
                model = DistilBertForSequenceClassification(DistilBertConfig(**cfg))
                encoder = model.distilbert
            else:
                model = encoder = DistilBertModel(DistilBertConfig(**cfg))
                state = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX) and k not in _IGNORED}
        with paddle.no_grad():
            _check_and_set(model, state, checkpoint)
        del state
        model.eval()
        eps = float(checkpoint.config.get("layer_norm_eps", 1e-12))
        for layer in model.sublayers(include_self=True):
            if isinstance(layer, paddle.nn.LayerNorm):
                layer._epsilon = eps
        self._paddle = paddle
        self._model = model
        self._encoder = encoder
        self.hidden_size = int(cfg["hidden_size"])
        # Paddle dygraph layers are not documented as thread-safe: one forward at a time.
        self._lock = threading.Lock()

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 of shape (batch, length, hidden)."""
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


def save_state(state: dict[str, np.ndarray], path: Path) -> None:
    """Write weights as a Paddle state dict (``model_state.pdparams``)."""
    with _quiet_imports():
        import paddle

    paddle.save(state, str(path))


def _load_state(paddle: Any, checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The weights with encoder keys under ``distilbert.``, whatever prefix the file used."""
    try:
        raw = paddle.load(str(checkpoint.weights_path), return_numpy=True)
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
            key = _PREFIX + key
        state[key] = np.asarray(value)
    return state


# Tensors some conversions carry that DistilBERT does not use (BERT's token types).
_IGNORED = (f"{_PREFIX}embeddings.token_type_embeddings.weight", f"{_PREFIX}embeddings.position_ids")


def _paddlenlp_config(checkpoint: Checkpoint, state: dict[str, np.ndarray], num_labels: int) -> dict[str, Any]:
    """PaddleNLP config arguments; sizes the config leaves out are read from the weights."""
    cfg = checkpoint.config
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "pad_token_id")
    out = {k: cfg[k] for k in keys if k in cfg}
    shapes = {
        "vocab_size": (f"{_PREFIX}embeddings.word_embeddings.weight", 0),
        "max_position_embeddings": (f"{_PREFIX}embeddings.position_embeddings.weight", 0),
        "intermediate_size": (f"{_PREFIX}encoder.layers.0.linear1.weight", 1),
    }
    for key, (name, axis) in shapes.items():
        if key not in out and name in state:
            out[key] = int(state[name].shape[axis])
    if "num_hidden_layers" not in out:
        out["num_hidden_layers"] = len({k.split(".")[3] for k in state if k.startswith(f"{_PREFIX}encoder.layers.")})
    hidden, heads = int(out["hidden_size"]), int(out.get("num_attention_heads", 12))
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
    prefix = _PREFIX if any(k.startswith(_PREFIX) for k in expected) else ""
    missing = [k for k in expected if k not in state]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {shape}"
             for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    # Encoder weights the config has no place for (more layers than it says) mean another model.
    unused = [k for k in state if k.startswith(prefix + "encoder.") and k not in expected]
    if missing or wrong or unused:
        details = []
        if missing:
            details.append(f"{len(missing)} missing weights (e.g. {', '.join(missing[:3])})")
        if wrong:
            details.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:3])})")
        if unused:
            details.append(f"{len(unused)} encoder weights the config does not describe (e.g. {', '.join(unused[:3])})")
        raise CheckpointError(
            f"The weights in {checkpoint.weights_path} do not fit the DistilBERT described by its config: "
            f"{'; '.join(details)}. Check that the config and the weights come from the same model."
        )
    model.set_state_dict({k: state[k] for k in expected})
