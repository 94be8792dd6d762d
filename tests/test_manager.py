import os
import threading
import warnings

import pytest

from distilframe.testing import write_checkpoint
from conftest import TINY_SST2
from distilframe import _manager as manager_mod
from distilframe.errors import CheckpointError, TestModelWarning
from distilframe._manager import ModelManager


def test_a_model_is_built_once_and_reused(fresh_manager):
    first = manager_mod.get_model("distilbert-base-uncased")
    second = manager_mod.get_model("uncased")  # alias: same checkpoint
    assert first is second
    assert fresh_manager.builds == {"distilbert-base-uncased": 1}
    assert fresh_manager.loaded_names() == ["distilbert-base-uncased"]


def test_concurrent_first_calls_build_once():
    mgr = ModelManager()
    results, errors = [], []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            results.append(mgr.get("cased"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert mgr.builds == {"distilbert-base-cased": 1}


def test_least_recently_used_model_is_dropped(monkeypatch):
    monkeypatch.setenv("DISTILFRAME_MAX_LOADED_MODELS", "2")
    mgr = ModelManager()
    mgr.get("uncased")
    mgr.get("cased")
    mgr.get("uncased")  # now "cased" is the least recently used
    mgr.get("multilingual")
    assert mgr.loaded_names() == ["distilbert-base-uncased", "renmada/distilbert-base-multilingual-cased"]
    mgr.get("cased")
    assert mgr.builds["distilbert-base-cased"] == 2 and mgr.builds["distilbert-base-uncased"] == 1


def test_bad_limit_setting_is_refused(monkeypatch):
    monkeypatch.setenv("DISTILFRAME_MAX_LOADED_MODELS", "zero")
    with pytest.raises(ValueError, match="DISTILFRAME_MAX_LOADED_MODELS='zero'"):
        ModelManager().get("uncased")


def test_a_checkpoint_replaced_on_disk_is_loaded_again(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=20)
    mgr = ModelManager()
    before = mgr.get(folder)
    write_checkpoint(folder, seed=21)
    st = (folder / "model_state.pdparams").stat()
    os.utime(folder / "model_state.pdparams", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = mgr.get(folder)
    assert after is not before and mgr.builds[str(folder.resolve())] == 2


def test_test_model_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(manager_mod, "_warned", set())
    with pytest.warns(TestModelWarning, match="carry no meaning"):
        ModelManager().get(TINY_SST2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TestModelWarning)
        ModelManager().get(TINY_SST2)  # a new manager, same process: no second warning


def test_labels_from_config_and_defaults(classifier_dir, tmp_path):
    assert ModelManager().get(classifier_dir).labels == ("negative", "neutral", "positive")
    unnamed = write_checkpoint(tmp_path / "unnamed", seed=22, num_labels=2, legacy_config=True)
    assert ModelManager().get(unnamed).labels == ("LABEL_0", "LABEL_1")
    assert ModelManager().get("uncased").labels == ()


def test_label_count_must_match_the_head(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=23, num_labels=3, labels=["a", "b"])
    with pytest.raises(CheckpointError, match="names 2 labels .* 3 outputs"):
        ModelManager().get(folder)


def test_a_changed_config_is_seen(tmp_path):
    import json

    folder = write_checkpoint(tmp_path / "ckpt", seed=24, num_labels=2, labels=["A", "B"])
    mgr = ModelManager()
    assert mgr.get(folder).labels == ("A", "B")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {"0": "neg", "1": "pos"}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert mgr.get(folder).labels == ("neg", "pos")


def test_duplicate_label_names_are_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=25, num_labels=2, labels=["X", "X"])
    with pytest.raises(CheckpointError, match="same label twice"):
        ModelManager().get(folder)


def test_a_failed_build_leaves_no_state_behind(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=26)
    (folder / "model_state.pdparams").write_bytes(b"not a state dict")
    mgr = ModelManager()
    with pytest.raises(CheckpointError):
        mgr.get(folder)
    assert mgr._building == {} and mgr.loaded_names() == [] and not mgr.builds
