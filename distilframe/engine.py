"""Run a DistilBERT checkpoint with Paddle: the only module that imports paddle and paddlenlp.

Two engines with one interface (``hidden_states``, ``logits``):

* ``PredictorEngine`` (the default): Paddle Inference with oneDNN, in fp32 or bf16.
  Each checkpoint is exported once (``paddle.jit.to_static``, dynamic batch and
  length) into ``<DISTILFRAME_HOME>/compiled/<content hash>-paddle<version>/`` and
  reused by every later process, which then needs neither PaddleNLP nor a model
  build: a fast cold start. On a CPU with native bf16 (AVX512-BF16 or AMX) bf16
  runs about 4x faster than fp32 dygraph on 2 cores (benchmarks/engines.py).
* ``PaddleEngine``: PaddleNLP's dygraph model; it validates the weights and is
  what gets exported, and the fallback when export or the predictor fails.

The attention mask of ``hidden_states`` may hold sequence numbers instead of ones:
0 is padding, and tokens marked k attend only to the other tokens marked k of their
row, with positions counted from 0 at each sequence's first token. A 0/1 mask is the
usual one-sequence-per-row case; the executor packs several short texts into one
row this way, so that a batch of short texts is not mostly padding.

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
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from .checkpoints import Checkpoint
from .errors import CheckpointError

__all__ = ["PRECISIONS", "PaddleEngine", "PredictorEngine", "available_cores", "native_bf16", "resolve_precision",
           "save_state"]

PRECISIONS = ("auto", "fp32", "bf16")

_PREFIX = "distilbert."
_HEAD_KEYS = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, quota)) if quota else cores


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs a container's CPU quota allows, or None without a quota."""
    import math

    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return math.ceil(int(quota) / int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return math.ceil(quota / period)
    except (OSError, ValueError):
        pass
    return None


def native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow.

    ``cpuinfo`` is the file to read the CPU's flags from (tests pass another CPU's)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str | None) -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` is DISTILFRAME_PRECISION if set, else bf16 on a CPU with native
    bf16 and no GPU, else fp32."""
    if precision is None or precision == "auto":
        precision = config.precision()
        if precision == "auto":
            precision = "bf16" if native_bf16() and not _gpu_visible() else "fp32"
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"Got precision={precision!r} but expected 'auto', 'fp32' or 'bf16'.")
    return precision


def _gpu_visible() -> bool:
    if "paddle" not in sys.modules:
        return False
    paddle = sys.modules["paddle"]
    try:
        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    except Exception:
        return False


def _import_paddle(num_threads: int | None) -> Any:
    """Import paddle and give it a sensible thread count.

    ``import paddle`` sets OMP_NUM_THREADS=1 when it is unset (and prints a warning when it
    is set higher), which would run every matmul on one core. So the variable is left alone
    and the count is set after the import, the same for every model of the process:
    ``num_threads``, else ``config.num_threads()`` (DISTILFRAME_NUM_THREADS, or the user's
    OMP_NUM_THREADS), else every core available to the process. Measured on 2 cores:
    the same speed as OMP_NUM_THREADS=2, 1.5x that of one thread.
    """
    paddle = _paddle()
    paddle.base.core.set_num_threads(num_threads or config.num_threads() or available_cores())
    return paddle


def _paddle() -> Any:
    """``import paddle``, quietly: Paddle's C++ side logs INFO and WARNING lines through glog (export and
    predictor details) to stderr, noise in notebooks and job logs. glog reads GLOG_minloglevel when paddle
    loads, so it is set for the import only (errors still show; a user's own setting is kept)."""
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    user = os.environ.get("GLOG_minloglevel")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        with _quiet_imports():
            import paddle
    except ImportError as e:
        raise ImportError(f"PaddlePaddle could not be imported ({e}). Install it: pip install 'paddlepaddle>=3.3,<3.4'.") from e
    finally:
        if user is None:
            os.environ.pop("GLOG_minloglevel", None)
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
        self.paddle_version = paddle.__version__
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


def save_state(state: dict[str, np.ndarray], path: Path) -> None:
    """Write weights as a Paddle state dict (``model_state.pdparams``)."""
    _paddle().save(state, str(path))


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
    Paddle with a visible GPU runs the same graph on the GPU (fp32), which cannot be tested here.
    """

    def __init__(self, checkpoint: Checkpoint, *, precision: str, num_threads: int | None = None) -> None:
        self.paddle = _import_paddle(num_threads)
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
            from paddle.inference import Config, create_predictor

            cfg = Config(str(self.folder / f"{kind}.json"), str(self.folder / f"{kind}.pdiparams"))
            cfg.disable_glog_info()
            if _gpu_visible():
                cfg.enable_use_gpu(256, 0)
            else:
                cfg.disable_gpu()
                cfg.enable_mkldnn()
                cfg.set_cpu_math_library_num_threads(self.threads)
                if self.precision == "bf16":
                    cfg.enable_mkldnn_bfloat16()
            predictor = create_predictor(cfg)
            inputs = [predictor.get_input_handle(n) for n in predictor.get_input_names()]
            output = predictor.get_output_handle(predictor.get_output_names()[0])
            self._predictors[kind] = (predictor, inputs, output)
        return self._predictors[kind]

    def _run(self, kind: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with self._lock:  # a predictor runs one batch at a time
            predictor, inputs, output = self._predictor(kind)
            for handle, array in zip(inputs, (input_ids, attention_mask)):
                array = np.ascontiguousarray(array, dtype=np.int64)
                handle.reshape(array.shape)
                handle.copy_from_cpu(array)
            predictor.run()
            return np.asarray(output.copy_to_cpu(), dtype=np.float32)


# What the exported graphs compute (their inputs' meaning): part of the export's cache key, so that a
# change here never reuses an older export (and the result cache never serves its results).
# 2: the encoder takes sequence numbers as its mask. 3: positions counted in integers (bf16 was wrong past 256).
_GRAPH_VERSION = 3


def export(checkpoint: Checkpoint, num_threads: int | None = None) -> Path:
    """The folder of the checkpoint's exported graphs, exporting them on first use (atomic, locked)."""
    from filelock import FileLock

    from .checkpoints import content_hash
    from .integrity import damaged, write_manifest

    paddle = _paddle()
    key = (f"{content_hash(checkpoint)}-paddle{paddle.__version__}-paddlenlp{_paddlenlp_version()}"
           f"-graph{_GRAPH_VERSION}")
    compiled = config.home() / "compiled"
    target = compiled / key
    if (target / "info.json").is_file() and not damaged(target):
        return target
    locks = config.home() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"compiled-{key}.lock")):
        if (target / "info.json").is_file() and not damaged(target):  # another process exported it meanwhile
            return target
        if target.exists():  # damaged, or an interrupted copy without info.json: export it again
            shutil.rmtree(target, ignore_errors=True)
        _remove_stale_exports(compiled)
        dygraph = PaddleEngine(checkpoint, num_threads=num_threads)  # validates the weights against the config
        compiled.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=compiled))
        try:
            from paddle.static import InputSpec

            specs = [InputSpec([None, None], "int64", "input_ids"), InputSpec([None, None], "int64", "attention_mask")]
            graphs = {"encoder": dygraph._encoder}
            if dygraph.has_classifier:
                graphs["classifier"] = dygraph._model
            with _quiet_imports(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
                for kind, layer in graphs.items():
                    static = paddle.jit.to_static(layer, input_spec=specs, full_graph=True)
                    paddle.jit.save(static, str(tmp / kind))
            info = {"has_classifier": dygraph.has_classifier, "num_labels": dygraph.num_labels,
                    "hidden_size": dygraph.hidden_size, "paddle": paddle.__version__}
            (tmp / "info.json").write_text(json.dumps(info))
            write_manifest(tmp, [p.name for p in sorted(tmp.iterdir())])
            os.chmod(tmp, 0o755 & ~_umask())
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _paddlenlp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paddlenlp")
    except PackageNotFoundError:
        return "none"


def _remove_stale_exports(compiled: Path) -> None:
    """Temporary folders of exports that were killed (older than a day)."""
    import time

    for old in compiled.glob(".*"):
        try:
            if old.is_dir() and time.time() - old.stat().st_mtime > 24 * 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
