"""Load each model once per process and keep it: a thread-safe LRU of loaded models.

A model is keyed by its checkpoint folder and content hash (``_checkpoint.content_hash``), so a
checkpoint changed on disk (weights, config, vocabulary, tokenizer settings) is loaded afresh.
The number of models kept is ``DISTILFRAME_MAX_LOADED_MODELS`` (default 2); the least
recently used one is dropped first. An int8 model keeps the fp32 model that classifies its near-ties
again (built on first use) with it: the pair counts as one and goes together.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from . import _config as config
from ._checkpoint import Checkpoint, content_hash
from ._options import RunOptions
from ._sentence import output_dim
from ._download import folder, is_on_disk, packaged_folder
from ._registry import REGISTRY, find, no_head_message
from ._resolve import resolve
from .errors import CheckpointError, EngineWarning, TestModelWarning, TruncationWarning, UnsupportedTaskError, warn

if TYPE_CHECKING:
    import pandas as pd

    from ._engine import PaddleEngine, PredictorEngine
    from ._onnx import OnnxInt8Engine
    from ._tokens import WordPieceTokenizer

__all__ = ["LoadedModel", "ModelManager", "get_model", "load_for", "manager", "models", "refuse_early"]

_warned: set[str] = set()  # test models already warned about in this process
_capped: set[tuple[str, int]] = set()  # (model, max_length) pairs already said to be past the model's positions


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: its checkpoint, its engine (Paddle, or ONNX Runtime for int8) and its tokenizer."""

    checkpoint: Checkpoint
    engine: "PaddleEngine | PredictorEngine | OnnxInt8Engine"
    tokenizer: "WordPieceTokenizer"
    labels: tuple[str, ...]
    precision: str = "fp32"
    num_threads: int | None = None  # as asked for (None: the process's default)
    # int8: the logit margin under which a classification is made again in fp32 (DISTILFRAME_INT8_RECHECK when
    # the model was got from its manager), and that fp32 model, built on first use.
    recheck: float = 0.0
    twin: "_Twin | None" = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.checkpoint.name

    def fp32(self) -> "LoadedModel":
        """This model in fp32: itself, or an int8 model's fp32 twin (what its near-ties run on)."""
        if self.precision == "fp32":
            return self
        if self.twin is None:
            raise ValueError(f"{self.name!r} in {self.precision} has no fp32 model beside it: only an int8 model "
                             "got from a ModelManager (get_model) is paired with one.")
        return self.twin.get()

    @property
    def dim(self) -> int:
        """The embedding's dimension with the model's own pooling: a sentence model's output (after its Dense
        modules), else the hidden size."""
        return self.checkpoint.sentence.dim if self.checkpoint.sentence is not None else self.engine.hidden_size

    def dim_for(self, options: RunOptions) -> int:
        """The embedding's dimension with ``options``' pooling (several modes are concatenated)."""
        return output_dim(self.engine.hidden_size, self.checkpoint.sentence, self.fill(options).pooling)

    def fill(self, options: RunOptions, *, warn_past_positions: bool = True) -> RunOptions:
        """``options`` with this model's own settings where they are None: a sentence-transformers model's
        pooling, Normalize, max_seq_length and default prompt; mean pooling, unit length and 512 tokens for a
        plain DistilBERT. An explicit option wins; ``prompt_name`` picks one of the model's prompts.
        ``max_length`` is capped at the model's positions (an explicit one past them is said once per process,
        unless ``warn_past_positions`` is False: a value read from a record) and, with ``long_text="chunk"``,
        ``stride`` at half a window, as they run."""
        head = self.checkpoint.sentence
        asked = options.max_length  # None: the model's own, capped without a word
        prompts = head.prompts if head is not None else {}
        name = options.prompt_name if options.prompt_name is not None else (head.default_prompt_name if head else None)
        if options.prompt_name is not None and options.prompt_name not in prompts:
            known = ", ".join(map(repr, prompts)) or "none"
            raise ValueError(f"Got prompt_name={options.prompt_name!r} but {self.name!r} has no such prompt "
                             f"(its prompts: {known}). Pass prompt='...' for a prompt of your own.")
        prompt = prompts.get(name) if options.prompt is None and name is not None else None
        if head is None:
            options = options.filled(pooling="mean", normalize=True, max_length=512, prompt=prompt)
        else:
            options = options.filled(pooling=head.pooling, normalize=head.normalize,
                                     max_length=head.max_seq_length or 512, prompt=prompt)
        # What runs, so that result files and the result cache record it: max_length capped at the model's
        # positions and, in chunk mode, a window's overlap at half its tokens ([CLS] and [SEP] aside); truncate
        # mode reads no stride, and records it as given (as files written before did: --resume compares them).
        positions = self.checkpoint.max_positions
        if warn_past_positions and asked is not None and asked > positions and (self.name, asked) not in _capped:
            # Once per process (fill runs for every chunk, partition, slice and search step of a call).
            warn(f"max_length={asked} is more than {self.name!r} can read: its position table has {positions} "
                 f"positions, so {positions} tokens are read (texts are cut there, or read in windows of that "
                 f"length with long_text='chunk'). Pass max_length={positions} or less.", TruncationWarning)
            _capped.add((self.name, asked))  # after warn: under a warnings-as-errors filter each call raises
        max_length = min(options.max_length, positions)
        stride = min(options.stride, (max_length - 2) // 2) if options.long_text == "chunk" else options.stride
        if (max_length, stride) != (options.max_length, options.stride):
            options = options.replace(max_length=max_length, stride=stride)
        return options

    @property
    def multi_label(self) -> bool:
        """Scores are independent sigmoids, not a softmax (as Hugging Face's pipeline decides)."""
        problem = self.checkpoint.config.get("problem_type")
        return problem == "multi_label_classification" or len(self.labels) == 1


class _Twin:
    """An int8 model's fp32 twin: built on first use, by the manager that built the int8 model, from the same
    checkpoint (its content hash checked again after the build: a folder changed meanwhile is refused rather
    than mixed in), or an fp32 model of it that manager holds already. It stays with the int8 model and goes
    with it: the two never evict each other. While the int8 model is held, the manager hands its built twin
    to fp32 calls too, so there is one fp32 copy.

    ``built`` is the fp32 model once there is one (None before)."""

    def __init__(self, manager: "ModelManager", checkpoint: Checkpoint, key: tuple, num_threads: int | None) -> None:
        self.manager, self.checkpoint, self.key, self.num_threads = manager, checkpoint, key, num_threads
        self._lock = threading.Lock()
        self.built: LoadedModel | None = None

    def get(self) -> LoadedModel:
        with self._lock:
            if self.built is None:
                self.built = self.manager.fp32_twin(self)
            return self.built


class ModelManager:
    """Process-wide cache of loaded models (least recently used first out).

    Attributes
    ----------
    builds
        How many times each checkpoint was built in this process, by name.
    """

    def __init__(self, max_models: int | None = None) -> None:
        self._max_models = max_models
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple, threading.Lock] = {}
        self.builds: Counter[str] = Counter()

    @property
    def max_models(self) -> int:
        return self._max_models or config.max_loaded_models()

    def get(self, model: str | os.PathLike, *, precision: str | None = "auto", num_threads: int | None = None,
            task: str | None = None) -> LoadedModel:
        """The loaded model for a name or a checkpoint folder, building it on first use.

        ``task`` is what it is got for: an int8 model got to ``"classify"`` (or for no stated task) with a
        classification head carries ``DISTILFRAME_INT8_RECHECK``'s margin, read now; got to ``"embed"``, never
        (embeddings are never rechecked, and an invalid value does not stop them)."""
        from ._engine import resolve_precision

        precision = resolve_precision(precision)
        checkpoint = resolve(model)
        key = _key(checkpoint, precision, num_threads)

        def build() -> LoadedModel:
            loaded = self._build(checkpoint, precision, num_threads)
            return replace(loaded, twin=_Twin(self, checkpoint, key, num_threads)) if precision == "int8" else loaded

        loaded = self._once(key, build, publish=True)
        if precision == "int8" and loaded.engine.has_classifier and task != "embed":
            margin = config.int8_recheck()  # as the environment says now: read once per call, not kept
            return loaded if loaded.recheck == margin else replace(loaded, recheck=margin)
        return loaded

    def fp32_twin(self, twin: _Twin) -> LoadedModel:
        """The fp32 model of the checkpoint ``twin``'s int8 model was built from (see :class:`_Twin`)."""
        fp32_key = (*twin.key[:2], "fp32", *twin.key[3:])

        def build() -> LoadedModel:
            loaded = self._build(twin.checkpoint, "fp32", twin.num_threads)
            if _key(twin.checkpoint, "fp32", twin.num_threads) != fp32_key:
                raise CheckpointError(
                    f"The files of {twin.checkpoint.name!r} in {twin.checkpoint.path} changed while its int8 model "
                    "was in use: its near-ties cannot be classified again in fp32 with the same weights. Run again "
                    "(the int8 model is then built from the new files), or set DISTILFRAME_INT8_RECHECK=0."
                )
            twin.built = loaded  # before the build lock is let go: an fp32 call waiting for it finds this one
            return loaded

        return self._once(fp32_key, build, publish=False)

    def _once(self, key: tuple, build: "Callable[[], LoadedModel]", *, publish: bool) -> LoadedModel:
        """The model held for ``key``, else ``build()``'s, run by one thread while the others wait for it (and
        put in the LRU when ``publish``)."""
        with self._lock:
            held = self._held(key)
            if held is not None:
                return held
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:
            try:
                with self._lock:
                    held = self._held(key)
                    if held is not None:
                        return held
                loaded = build()
                if publish:
                    with self._lock:
                        self._models[key] = loaded
                        while len(self._models) > self.max_models:
                            self._models.popitem(last=False)
            finally:
                with self._lock:
                    self._building.pop(key, None)
        return loaded

    def _held(self, key: tuple) -> LoadedModel | None:
        """(Under ``_lock``.) The model for ``key`` in the LRU, or the built fp32 twin of an int8 model there."""
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        int8_key = (*key[:2], "int8", *key[3:])
        int8 = self._models.get(int8_key) if key[2] == "fp32" else None
        if int8 is None or int8.twin is None or int8.twin.built is None:
            return None
        self._models.move_to_end(int8_key)  # the pair was used
        return int8.twin.built

    def loaded_names(self) -> list[str]:
        """Names of the models currently in memory, least recently used first (then int8 models' fp32 twins)."""
        with self._lock:
            held = list(self._models.values())
        twins = [m.twin.built for m in held if m.twin is not None and m.twin.built is not None]
        return [m.name for m in held] + [t.name for t in twins if not any(t is m for m in held)]

    def clear(self) -> None:
        """Drop every loaded model (their memory is freed once no result refers to them)."""
        with self._lock:
            self._models.clear()

    def _build(self, checkpoint: Checkpoint, precision: str, num_threads: int | None) -> LoadedModel:
        from ._engine import PaddleEngine, PredictorEngine
        from ._tokens import WordPieceTokenizer

        if checkpoint.spec is not None and checkpoint.spec.test_model and checkpoint.name not in _warned:
            _warned.add(checkpoint.name)
            warn(
                f"{checkpoint.name!r} is a 2-layer, hidden-size-2 test model: its predictions carry no meaning. "
                "Use a real fine-tuned checkpoint for real work.",
                TestModelWarning,
            )
        if precision == "int8":  # ONNX Runtime (extra int8): Paddle 3's predictor has no CPU int8 pass
            from ._onnx import OnnxInt8Engine

            if _paddle_gpu():
                warn("precision='int8' runs on the CPU (ONNX Runtime's CPU kernels), not on the GPU Paddle sees: "
                     "use precision='fp32' or 'auto' to run on the GPU.", EngineWarning)
            engine = OnnxInt8Engine(checkpoint, num_threads=num_threads)
        elif config.engine() == "dygraph":
            if precision == "bf16":
                warn(f"DISTILFRAME_ENGINE=dygraph runs PaddleNLP's model in fp32 only: {checkpoint.name!r} runs in "
                     "fp32, not bf16 as asked (exact, slower). Unset DISTILFRAME_ENGINE for Paddle Inference's bf16.",
                     EngineWarning)
            engine, precision = PaddleEngine(checkpoint, num_threads=num_threads), "fp32"
        else:
            try:
                engine = PredictorEngine(checkpoint, precision=precision, num_threads=num_threads)
            except (CheckpointError, ImportError):
                raise
            except Exception as e:  # export or predictor: run the slower engine rather than nothing
                warn(f"Paddle Inference could not run {checkpoint.name!r} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); using PaddleNLP's dygraph model in fp32 "
                     "instead, which is slower. Set DISTILFRAME_ENGINE=dygraph to skip the attempt.", EngineWarning)
                engine, precision = PaddleEngine(checkpoint, num_threads=num_threads), "fp32"
        try:
            tokenizer = WordPieceTokenizer(checkpoint.vocab_path, do_lower_case=checkpoint.do_lower_case,
                                           strip_accents=checkpoint.strip_accents,
                                           tokenize_chinese_chars=checkpoint.tokenize_chinese_chars,
                                           added_tokens=checkpoint.added_tokens)
        except ValueError as e:
            raise CheckpointError(str(e)) from e
        vocab_size = int(checkpoint.config.get("vocab_size", tokenizer.vocab_size))
        if tokenizer.vocab_size > vocab_size:
            raise CheckpointError(
                f"{checkpoint.vocab_path} has {tokenizer.vocab_size} tokens but the model embeds only {vocab_size}: "
                "the vocabulary and the weights come from different models."
            )
        labels = checkpoint.labels
        if engine.has_classifier:
            if not labels:
                labels = tuple(f"LABEL_{i}" for i in range(engine.num_labels))
            elif len(labels) != engine.num_labels:
                raise CheckpointError(
                    f"{checkpoint.name!r} names {len(labels)} labels ({', '.join(labels)}) but its classifier "
                    f"has {engine.num_labels} outputs. Fix id2label in its config."
                )
            if len(set(labels)) != len(labels):
                raise CheckpointError(
                    f"{checkpoint.name!r} names the same label twice ({', '.join(labels)}): "
                    "give each class its own name in id2label."
                )
        else:
            labels = ()
        self.builds[checkpoint.name] += 1
        return LoadedModel(checkpoint=checkpoint, engine=engine, tokenizer=tokenizer, labels=labels,
                           precision=precision, num_threads=num_threads)


def _key(checkpoint: Checkpoint, precision: str, num_threads: int | None) -> tuple:
    """A loaded model's key. The same folder can be read with other tokenizer settings (a registered name's
    casing comes from the registry, a path's from its files) and run with other threads: each is its own model."""
    tokenizer = (checkpoint.do_lower_case, checkpoint.strip_accents, checkpoint.tokenize_chinese_chars,
                 json.dumps(list(checkpoint.added_tokens), sort_keys=True))
    return (str(checkpoint.path), content_hash(checkpoint), precision, num_threads, tokenizer)


manager = ModelManager()


def get_model(model: str | os.PathLike, *, precision: str | None = "auto", num_threads: int | None = None,
              task: str | None = None) -> LoadedModel:
    """The process-wide loaded model for ``model`` (see :meth:`ModelManager.get`)."""
    return manager.get(model, precision=precision, num_threads=num_threads, task=task)


def load_for(task: str, model: str | os.PathLike, *, precision: str | None = "auto",
             num_threads: int | None = None) -> LoadedModel:
    """The loaded model, refused early (before any download) if it cannot do ``task``."""
    refuse_early(task, model)
    loaded = get_model(model, precision=precision, num_threads=num_threads, task=task)
    if task == "classify" and not loaded.engine.has_classifier:
        raise UnsupportedTaskError(no_head_message(loaded.name))
    return loaded


def _paddle_gpu() -> bool:
    from ._paddle import gpu_visible

    return gpu_visible()


def refuse_early(task: str, model: Any) -> None:
    """UnsupportedTaskError for a registered model that cannot do ``task`` (a base model asked to classify),
    from the registry alone: before any download or load."""
    if task == "classify":
        spec = find(model) if isinstance(model, str) else None
        if spec is not None and not spec.can_classify:
            raise UnsupportedTaskError(no_head_message(spec.name))


def models() -> "pd.DataFrame":
    """The registry as a DataFrame, with whether each model is on disk and loaded in this process.

    Examples
    --------
    >>> import distilframe
    >>> distilframe.models()[["name", "tasks", "on_disk"]]  # doctest: +SKIP
    """
    import pandas as pd

    loaded = set(manager.loaded_names())
    rows = []
    for spec in REGISTRY:
        rows.append(
            {
                "name": spec.name,
                "aliases": ", ".join(spec.aliases),
                "tasks": ", ".join(spec.tasks),
                "languages": spec.languages,
                "cased": spec.cased,
                "layers": spec.layers,
                "hidden_size": spec.hidden_size,
                "dim": spec.output_dim,
                "pooling": spec.pooling,
                "heads": spec.heads,
                "parameters": spec.parameters,
                "max_length": spec.max_length,
                "labels": ", ".join(spec.labels),
                "on_disk": is_on_disk(spec),
                "loaded": spec.name in loaded,
                "path": str(packaged_folder(spec) or folder(spec)),
                "license": spec.license or "not stated",
                "card": spec.card,
                "description": spec.description,
            }
        )
    return pd.DataFrame(rows)
