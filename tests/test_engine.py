"""The Paddle engine against an independent float64 numpy DistilBERT (tests/reference.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from distilframe.testing import write_checkpoint
from reference import reference_forward
from conftest import TINY_SST2
from distilframe import _resolve as checkpoints
from distilframe._engine import PaddleEngine
from distilframe.errors import CheckpointError


def batch():
    """Mixed lengths with padding, and a real [PAD] id (0) inside the first text."""
    ids = np.array([[2, 60, 0, 61, 62, 63, 64, 3], [2, 70, 71, 3, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])
    return ids, mask


def assert_hidden_close(got, want, mask, atol=1e-4):
    m = mask.astype(bool)
    assert np.max(np.abs(got[m] - want[m])) <= atol


@pytest.mark.parametrize("name", ["distilbert-base-uncased", "distilbert-base-cased", "multilingual"])
def test_hidden_states_match_the_reference(name):
    ckpt = checkpoints.resolve(name)
    engine = PaddleEngine(ckpt)
    ids, mask = batch()
    want, _ = reference_forward(ckpt.path, ids, mask)
    got = engine.hidden_states(ids, mask)
    assert got.dtype == np.float32 and got.shape == (3, 8, 32)
    assert_hidden_close(got, want, mask)


def test_logits_of_a_legacy_classifier_match_the_reference():
    ckpt = checkpoints.resolve(TINY_SST2)
    engine = PaddleEngine(ckpt)
    assert engine.has_classifier and engine.num_labels == 2
    ids, mask = batch()
    want_hidden, want_logits = reference_forward(ckpt.path, ids, mask)
    assert np.max(np.abs(engine.logits(ids, mask) - want_logits)) <= 1e-4
    assert_hidden_close(engine.hidden_states(ids, mask), want_hidden, mask)


def test_layernorm_epsilon_is_the_checkpoints_and_it_matters():
    import paddle

    ckpt = checkpoints.resolve("uncased")
    engine = PaddleEngine(ckpt)
    norms = [layer for layer in engine._model.sublayers(include_self=True) if isinstance(layer, paddle.nn.LayerNorm)]
    assert len(norms) == 1 + 2 * 2 and all(layer._epsilon == 1e-12 for layer in norms)
    assert not any(layer.training for layer in engine._model.sublayers(include_self=True))
    # The test weights are made so that Paddle's default epsilon would show: the parity above is not luck.
    ids, mask = batch()
    with_default_eps, _ = reference_forward(ckpt.path, ids, mask, eps=1e-5)
    got = engine.hidden_states(ids, mask)
    assert np.max(np.abs(got[mask.astype(bool)] - with_default_eps[mask.astype(bool)])) > 1e-3


def test_without_the_mask_a_real_pad_token_would_be_ignored():
    # Guards the reason the engine always passes the mask: PaddleNLP's fallback masks id 0.
    ckpt = checkpoints.resolve("uncased")
    engine = PaddleEngine(ckpt)
    ids, mask = batch()
    want, _ = reference_forward(ckpt.path, ids, mask)
    pad_masked = mask.copy()
    pad_masked[0, 2] = 0
    wrong, _ = reference_forward(ckpt.path, ids, pad_masked)
    got = engine.hidden_states(ids, mask)
    assert np.max(np.abs(got[0, 0] - want[0, 0])) <= 1e-4
    assert np.max(np.abs(got[0, 0] - wrong[0, 0])) > 1e-3


def test_config_that_does_not_fit_the_weights_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=7)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "hidden_size": 64, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError) as e:
        PaddleEngine(checkpoints.resolve(folder))
    assert "shape mismatches" in str(e.value) and "missing weights" in str(e.value)
    assert "encoder.layers.2" in str(e.value)


def test_damaged_weights_file_is_reported(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=8)
    data = (folder / "model_state.pdparams").read_bytes()
    (folder / "model_state.pdparams").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="damaged .* replace it with a good copy"):
        PaddleEngine(checkpoints.resolve(folder))


def test_weights_for_more_layers_than_the_config_are_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=9)  # 2 layers
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    with pytest.raises(CheckpointError, match="encoder weights the config does not describe .*layers.1"):
        PaddleEngine(checkpoints.resolve(folder))


def test_incomplete_classification_head_is_refused(tmp_path):
    import paddle

    folder = write_checkpoint(tmp_path / "ckpt", seed=10, num_labels=2)
    state = paddle.load(str(folder / "model_state.pdparams"), return_numpy=True)
    del state["classifier.bias"]
    paddle.save(state, str(folder / "model_state.pdparams"))
    with pytest.raises(CheckpointError, match="incomplete classification head.*not classifier.bias"):
        PaddleEngine(checkpoints.resolve(folder))


def test_other_heads_are_ignored_so_such_checkpoints_still_embed(tmp_path):
    import paddle

    from distilframe.errors import UnsupportedTaskError
    from distilframe._manager import ModelManager, load_for

    folder = write_checkpoint(tmp_path / "ner", seed=15)  # a token classifier: classifier.* on every token
    state = paddle.load(str(folder / "model_state.pdparams"), return_numpy=True)
    state["classifier.weight"] = np.zeros((32, 9), np.float32)
    state["classifier.bias"] = np.zeros(9, np.float32)
    paddle.save(state, str(folder / "model_state.pdparams"))
    engine = PaddleEngine(checkpoints.resolve(folder))
    assert not engine.has_classifier
    ids, mask = batch()
    want, _ = reference_forward(folder, ids, mask)
    assert_hidden_close(engine.hidden_states(ids, mask), want, mask)
    import pandas as pd

    with pytest.raises(UnsupportedTaskError, match="no trained classification head"):
        pd.Series(["a cat"]).distil.classify(model=folder)
    assert ModelManager().get(folder).labels == ()
    assert load_for("embed", folder) is not None


def test_heads_must_divide_the_hidden_size(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=13)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_attention_heads": 5}))
    with pytest.raises(CheckpointError, match="hidden_size=32 and num_attention_heads=5"):
        PaddleEngine(checkpoints.resolve(folder))


def test_sizes_missing_from_the_config_are_read_from_the_weights(tmp_path):
    full = write_checkpoint(tmp_path / "full", seed=14)
    folder = write_checkpoint(tmp_path / "ckpt", seed=14)
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("vocab_size", "intermediate_size", "max_position_embeddings", "num_hidden_layers"):
        del cfg[key]
    (folder / "config.json").write_text(json.dumps(cfg))
    engine = PaddleEngine(checkpoints.resolve(folder))
    ids, mask = batch()
    want, _ = reference_forward(full, ids, mask)
    assert_hidden_close(engine.hidden_states(ids, mask), want, mask)


def test_a_broken_paddlenlp_install_gets_a_fix_in_the_message(monkeypatch):
    import sys

    from distilframe import _paddle

    # What a failed import looks like; PaddleNLP is imported only to download its weights.
    monkeypatch.setitem(sys.modules, "paddlenlp.utils.download.bos_download", None)
    with pytest.raises(ImportError, match="huggingface_hub<0.26"):
        _paddle.bos_downloader()


@pytest.mark.parametrize("act", ["gelu", "relu"])
@pytest.mark.parametrize("num_labels", [0, 3])
def test_the_network_is_paddlenlps_own_bit_for_bit(act, num_labels):
    """The engine builds PaddleNLP's DistilBertModel / DistilBertForSequenceClassification from paddle.nn (to
    spare the 3 s import of PaddleNLP): the same parameters under the same names, the same outputs to the bit."""
    import paddle
    from paddlenlp.transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    from distilframe._engine import _CONFIG_DEFAULTS, _distilbert

    defaults = DistilBertConfig()
    assert {k: getattr(defaults, k) for k in _CONFIG_DEFAULTS} == _CONFIG_DEFAULTS
    cfg = {"vocab_size": 80, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 24, "hidden_act": act, "max_position_embeddings": 20, "pad_token_id": 0,
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if num_labels:
        cfg["num_labels"] = num_labels
    paddle.seed(5)
    theirs = (DistilBertForSequenceClassification if num_labels else DistilBertModel)(DistilBertConfig(**cfg))
    theirs.eval()
    ours = _distilbert(paddle, cfg, 1e-12)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.set_state_dict(theirs.state_dict())
    assert not any(layer.training for layer in ours.sublayers(include_self=True))
    norms = [[layer._epsilon for layer in m.sublayers() if isinstance(layer, paddle.nn.LayerNorm)] for m in (ours, theirs)]
    assert norms[0] == norms[1] == [1e-12] * (1 + 2 * 2)  # PaddleNLP's init_weights sets 1e-12
    ids, mask = (paddle.to_tensor(a) for a in batch())
    with paddle.no_grad():
        want, got = theirs(ids, attention_mask=mask).numpy(), ours(ids, attention_mask=mask).numpy()
        assert np.array_equal(got, want)
        assert np.array_equal(ours(ids[:, :4], attention_mask=mask[:, :4]).numpy(),
                              theirs(ids[:, :4], attention_mask=mask[:, :4]).numpy())


def test_thread_count_is_the_same_for_every_model_of_the_process(monkeypatch):
    import os

    import paddle

    from distilframe import _config as config
    from distilframe import _engine as engine_mod

    calls = []
    monkeypatch.setattr(paddle.base.core, "set_num_threads", calls.append)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(config, "_OMP_BEFORE_PADDLE", None)
    monkeypatch.delenv("DISTILFRAME_NUM_THREADS", raising=False)
    engine_mod._paddle.with_threads(1)  # an explicit num_threads
    engine_mod._paddle.with_threads(None)  # every available core
    monkeypatch.setattr(config, "_OMP_BEFORE_PADDLE", "1")  # the user's OMP_NUM_THREADS=1
    engine_mod._paddle.with_threads(None)
    engine_mod._paddle.with_threads(None)
    monkeypatch.setenv("DISTILFRAME_NUM_THREADS", "2")
    engine_mod._paddle.with_threads(None)
    assert calls == [1, 3, 1, 1, 2]
    assert config.available_cores() == 3
    monkeypatch.setenv("DISTILFRAME_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="DISTILFRAME_NUM_THREADS='many'"):
        engine_mod._paddle.with_threads(None)


@pytest.mark.parametrize("num_labels", [0, 2])
def test_the_engine_equals_paddlenlps_own_load_of_the_same_folder(tmp_path, num_labels):
    """The whole build path (weights read safely, checked and set under LazyGuard, epsilon from the config)
    against PaddleNLP's from_pretrained of the same checkpoint folder: equal to the bit."""
    import paddle
    from paddlenlp.transformers import DistilBertForSequenceClassification, DistilBertModel

    folder = write_checkpoint(tmp_path / "ckpt", seed=81, num_labels=num_labels)
    engine = PaddleEngine(checkpoints.resolve(folder))
    theirs = (DistilBertForSequenceClassification if num_labels else DistilBertModel).from_pretrained(str(folder))
    theirs.eval()
    ids, mask = batch()
    with paddle.no_grad():
        want = theirs(paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask)).numpy()
        assert np.array_equal(engine._model(paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask)).numpy(), want)
    if num_labels:
        assert np.array_equal(engine.logits(ids, mask), want)
    else:  # the packed encoder: the same at every token (padding, which nothing reads, is computed otherwise)
        real = mask.astype(bool)
        assert np.array_equal(engine.hidden_states(ids, mask)[real], want[real])


INTERRUPTED_IMPORT = """
import sys, warnings
import pandas as pd
from distilframe.testing import write_checkpoint

class Interrupt:  # a Ctrl-C in the middle of the first call's import paddle
    armed = True
    def find_spec(self, name, path=None, target=None):
        if name.startswith("paddle.") and Interrupt.armed:
            Interrupt.armed = False
            raise KeyboardInterrupt
        return None

folder = write_checkpoint(sys.argv[1], seed=5)
sys.meta_path.insert(0, Interrupt())
try:
    pd.Series(["a cat"]).distil.embed(model=folder)
except KeyboardInterrupt:
    print("interrupted")
warnings.simplefilter("error")  # no EngineWarning about falling back to the dygraph model
try:
    pd.Series(["a cat"]).distil.embed(model=folder)
except ImportError as e:
    print("ImportError:", e)
"""


def test_a_ctrl_c_during_the_import_of_paddle_says_to_restart_python(tmp_path):
    # Its modules stay half-initialized: every later call failed with "partially initialized module 'paddle'",
    # after a warning that blamed Paddle Inference and a fallback to the dygraph model that failed alike.
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT, str(tmp_path / "ckpt")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "DISTILFRAME_HOME": str(tmp_path / "home")})
    assert out.stdout.splitlines()[0] == "interrupted", out.stderr[-2000:]
    assert "ImportError: Importing Paddle was interrupted in this process" in out.stdout
    assert "restart Python (in a notebook, restart the kernel)" in out.stdout
