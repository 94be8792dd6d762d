import json

import numpy as np
import pytest

from distilframe.testing import write_checkpoint
from conftest import TINY_SST2
from servers import StaticServer
from distilframe import _resolve as checkpoints
from distilframe._download import is_on_disk
from distilframe._fs import STALE_SECONDS
from distilframe.errors import CheckpointError, ModelNotAvailableError, UnknownModelError
from distilframe._registry import lookup


def test_registered_names_resolve_from_the_seeded_cache(seeded_home):
    for name in ("distilbert-base-uncased", "cased", "multilingual"):
        ckpt = checkpoints.resolve(name)
        assert ckpt.path.is_relative_to(seeded_home / "models")
        assert ckpt.hidden_size == 32  # the seeded test weights, not the generated base-size config
    assert checkpoints.resolve("cased").do_lower_case is False
    assert checkpoints.resolve("uncased").do_lower_case is True


def test_legacy_config_of_the_sst2_model_is_flattened():
    ckpt = checkpoints.resolve(TINY_SST2)
    assert (ckpt.path / "model_config.json").is_file() and not (ckpt.path / "config.json").exists()
    assert ckpt.config["hidden_size"] == 32 and ckpt.config["num_labels"] == 2
    assert ckpt.labels == ("NEGATIVE", "POSITIVE")  # from the registry: the file names none


def test_local_folder_as_str_or_path(classifier_dir):
    for given in (str(classifier_dir), classifier_dir):
        ckpt = checkpoints.resolve(given)
        assert ckpt.path == classifier_dir.resolve()
        assert ckpt.name == str(classifier_dir.resolve())
        assert ckpt.labels == ("negative", "neutral", "positive")
        assert ckpt.spec is None


def test_local_folder_with_missing_files_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", seed=5)
    (folder / "vocab.txt").unlink()
    with pytest.raises(CheckpointError) as e:
        checkpoints.resolve(folder)
    assert "missing vocab.txt" in str(e.value) and "model_state.pdparams" in str(e.value)


def test_missing_folder_and_misspelt_names():
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.resolve("./no/such/checkpoint")
    with pytest.raises(UnknownModelError, match="Did you mean 'renmada/distilbert-base-multilingual-cased'"):
        checkpoints.resolve("renmada/distilbert-base-multilingal-cased")


def test_other_model_types_are_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "bert", seed=6)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match="'bert' model"):
        checkpoints.resolve(folder)


# ------------------------------------------------------------------ downloads, through a local server

@pytest.mark.filterwarnings("ignore::distilframe.TestModelWarning")
def test_download_builtin_and_community_models(bos, empty_home, monkeypatch, fresh_manager):
    server = StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        ckpt = checkpoints.resolve("uncased")
        folder = empty_home / "models/distilbert-base-uncased"
        assert ckpt.path == folder
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json", "distilframe_manifest.json", "model_state.pdparams", "tokenizer_config.json", "vocab.txt"]
        assert json.loads((folder / "config.json").read_text())["hidden_size"] == 768  # PaddleNLP's table
        assert (folder / "vocab.txt").read_bytes() == (bos / "models/transformers/distilbert/distilbert-base-uncased-vocab.txt").read_bytes()

        tiny = checkpoints.resolve(TINY_SST2)
        names = sorted(p.name for p in tiny.path.iterdir())
        assert names == ["distilframe_manifest.json", "model_config.json", "model_state.pdparams", "vocab.txt"]  # config.json 404 -> legacy name
        assert any(r.endswith("/config.json") for r in server.requests)

        # The downloaded model runs, and gives what the seeded copy of the same files gives.
        from distilframe import _run as executor
        from distilframe._manager import ModelManager

        downloaded = ModelManager().get(TINY_SST2)
        probs = executor.run(["a good movie", "a bad film"], downloaded, task="classify").values
        assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)

        n = len(server.requests)
        checkpoints.resolve(TINY_SST2)
        checkpoints.resolve("uncased")
        assert len(server.requests) == n  # on disk: no network call
        assert not any((empty_home / "tmp").iterdir())  # staging cleaned
    finally:
        server.close()


def test_failed_download_names_what_is_missing_and_leaves_nothing(bos, empty_home, monkeypatch):
    (bos / "models/transformers/distilbert/distilbert-base-uncased.pdparams").unlink()
    server = StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        with pytest.raises(ModelNotAvailableError) as e:
            checkpoints.resolve("distilbert-base-uncased")
    finally:
        server.close()
    message = str(e.value)
    folder = empty_home / "models/distilbert-base-uncased"
    assert "'distilbert-base-uncased'" in message and "model_state.pdparams" in message
    assert str(folder) in message and "DISTILFRAME_HOME" in message
    # The next steps: where each missing file comes from, the download command, and the offline switch.
    assert f"model_state.pdparams (from {server.url}/models/transformers/distilbert/distilbert-base-uncased.pdparams)" \
        in message
    assert "`distilframe download distilbert-base-uncased`" in message and "DISTILFRAME_OFFLINE=1" in message
    assert isinstance(e.value, OSError)
    assert not folder.exists() or list(folder.iterdir()) == []  # no partial or temporary file
    assert not any((empty_home / "tmp").iterdir())


def test_connection_cut_mid_file_leaves_no_partial_file(bos, empty_home, monkeypatch):
    server = StaticServer(bos, truncate={"model_state.pdparams"})
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        with pytest.raises(ModelNotAvailableError):
            checkpoints.resolve(TINY_SST2)
    finally:
        server.close()
    folder = empty_home / "models" / TINY_SST2
    assert not folder.exists() or list(folder.iterdir()) == []  # the weights came first: nothing kept
    assert not any((empty_home / "tmp").iterdir())
    assert not is_on_disk(lookup(TINY_SST2))


def test_unreachable_server_says_so(empty_home):
    with pytest.raises(ModelNotAvailableError, match="could not connect to http://127.0.0.1:9/"):
        checkpoints.resolve("cased")


def test_offline_mode_never_touches_the_network(bos, empty_home, monkeypatch):
    server = StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
    try:
        with pytest.raises(ModelNotAvailableError, match="DISTILFRAME_OFFLINE=1"):
            checkpoints.resolve("uncased")
    finally:
        server.close()
    assert server.requests == []


def test_casing_of_a_local_checkpoint_without_tokenizer_config(tmp_path):
    import warnings

    from distilframe.errors import CasingWarning

    cased = write_checkpoint(tmp_path / "cased", seed=31, cased=True, tokenizer_config=False)
    uncased = write_checkpoint(tmp_path / "uncased", seed=32, tokenizer_config=False)
    # Lower-case, as PaddleNLP and transformers do when nothing is said, so the numbers match theirs;
    # but a vocabulary with upper-case pieces gets a warning that says how to declare the casing.
    with pytest.warns(CasingWarning, match='add {"do_lower_case": false}'):
        assert checkpoints.resolve(cased).do_lower_case is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", CasingWarning)
        assert checkpoints.resolve(uncased).do_lower_case is True


def test_staging_folders_of_killed_downloads_are_removed(bos, empty_home, monkeypatch):
    import os
    import time

    stale = empty_home / "tmp" / "download-old"
    fresh = empty_home / "tmp" / "download-live"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "partial").write_bytes(b"x")
    old = time.time() - 2 * STALE_SECONDS
    os.utime(stale, (old, old))
    server = StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        checkpoints.resolve(TINY_SST2)
    finally:
        server.close()
    assert not stale.exists() and fresh.exists()  # a live download of another process is left alone


class _Payload:
    """What an attacker plants in a .pdparams: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _plant(weights, marker):
    import pickle

    with open(weights, "rb") as f:
        state = pickle.load(f)
    state["evil"] = _Payload(marker)
    weights.write_bytes(pickle.dumps(state, protocol=4))


def test_weights_that_would_run_code_are_refused_and_nothing_runs(tmp_path, fresh_manager):
    import pandas as pd

    folder = write_checkpoint(tmp_path / "ckpt", seed=90)
    marker = tmp_path / "it-ran"
    _plant(folder / "model_state.pdparams", marker)
    with pytest.raises(CheckpointError, match="posix.system.*could run code"):
        pd.Series(["a good film"]).distil.embed(model=folder, cache=False)
    assert not marker.exists()


def test_a_payload_planted_in_the_shared_conversion_cache_is_refused(tmp_path, monkeypatch, fresh_manager):
    import pandas as pd

    from distilframe import _manager
    from distilframe.testing import write_hf_checkpoint

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    folder = write_hf_checkpoint(tmp_path / "hf", seed=91)  # safetensors: converted into the shared cache
    pd.Series(["a good film"]).distil.embed(model=folder, cache=False)
    converted = list((tmp_path / "home/converted").glob("*/model_state.pdparams"))
    assert len(converted) == 1
    marker = tmp_path / "it-ran"
    _plant(converted[0], marker)  # another user of a shared DISTILFRAME_HOME, who can also
    from distilframe._fs import write_manifest

    write_manifest(converted[0].parent, ["model_state.pdparams"])  # update the manifest
    monkeypatch.setattr(_manager, "manager", _manager.ModelManager())
    for export in (tmp_path / "home").glob("compiled/*"):  # so that the weights are read again
        import shutil

        shutil.rmtree(export)
    with pytest.raises(CheckpointError, match="could run code"):
        pd.Series(["a good film"]).distil.embed(model=folder, cache=False)
    assert not marker.exists()


def test_every_form_paddle_writes_a_state_dict_in_loads(tmp_path):
    import collections
    import pickle

    from distilframe._paddle import load_state, save_state

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float16)}
    import paddle

    save_state(arrays, tmp_path / "ours.pdparams")  # what distilframe writes, without Paddle
    assert sorted(paddle.load(str(tmp_path / "ours.pdparams"), return_numpy=True)) == ["a", "b"]
    paddle.save(arrays, str(tmp_path / "now.pdparams"))  # paddle.save, Paddle 3
    old = collections.OrderedDict((k, (f"param_{k}", v)) for k, v in arrays.items())  # Paddle 2.x tensors
    old["StructuredToParameterName@@"] = {"a": "param_a", "b": "param_b"}
    (tmp_path / "old.pdparams").write_bytes(pickle.dumps(old, protocol=2))
    big = {"a.0": arrays["a"].ravel()[:3], "a.1": arrays["a"].ravel()[3:], "b": arrays["b"],
           "UnpackBigParamInfor@@": {"a": {"OriginShape": [2, 3], "slices": ["a.0", "a.1"]}}}
    (tmp_path / "big.pdparams").write_bytes(pickle.dumps(big, protocol=4))
    for name in ("ours", "now", "old", "big"):
        got = load_state(tmp_path / f"{name}.pdparams")
        assert sorted(got) == ["a", "b"], name
        for key, value in arrays.items():
            np.testing.assert_array_equal(got[key], value)
            assert got[key].dtype == value.dtype


@pytest.mark.parametrize("model,error,message", [
    ("", UnknownModelError, "Got model=''"),
    ("x" * 5000, UnknownModelError, "5,000 characters"),
    ("FILE", CheckpointError, "is a file; a checkpoint is a folder"),
])
def test_names_that_are_no_model_say_what_came_in(tmp_path, model, error, message):
    if model == "FILE":
        model = tmp_path / "weights.bin"
        model.write_bytes(b"x")
    with pytest.raises(error, match=message):
        checkpoints.resolve(str(model))


@pytest.mark.parametrize("edit,message", [
    (lambda f: _edit_config(f, hidden_act="swishy"), "hidden_act='swishy'; distilframe runs DistilBERT's 'gelu'"),
    (lambda f: _edit_config(f, max_position_embeddings="512a"), "max_position_embeddings='512a'; expected a positive"),
    (lambda f: (f / "vocab.txt").write_bytes((f / "vocab.txt").read_bytes() + b"\xff\xfe\n"),
     "vocab.txt is not UTF-8 text: line"),
])
def test_a_bad_config_or_vocabulary_is_a_one_line_error(tmp_path, edit, message):
    folder = write_checkpoint(tmp_path / "ckpt", seed=92)
    edit(folder)
    with pytest.raises(CheckpointError, match=message):
        checkpoints.resolve(folder)


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **changes}))


def test_a_folder_is_read_once_per_process_until_its_files_change(tmp_path, monkeypatch):
    """A warm call does not re-read the vocabulary and settings (9 ms of a distilbert-base call), but an edited,
    added or removed file, in the source or in the conversion, is read again."""
    import os

    from distilframe import _checkpoint, _convert
    from distilframe.testing import write_hf_checkpoint

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    reads, vocabularies = [], []
    real_read, real_vocabulary = _checkpoint._read, _convert._vocabulary
    monkeypatch.setattr(_checkpoint, "_read", lambda *a: reads.append(a) or real_read(*a))
    monkeypatch.setattr(_convert, "_vocabulary", lambda *a: vocabularies.append(a) or real_vocabulary(*a))
    folder = write_checkpoint(tmp_path / "paddle", seed=33, num_labels=2)
    hf = write_hf_checkpoint(tmp_path / "hf", seed=34)
    first, converted = checkpoints.resolve(folder), checkpoints.resolve(hf)
    assert checkpoints.resolve(folder) is first and checkpoints.resolve(str(hf)) is converted
    assert len(reads) == 2 and len(vocabularies) == 1

    cfg_path = folder / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "id2label": {"0": "bad", "1": "good"}}))
    os.utime(cfg_path, ns=(1, 1))  # a new version even on a file system with coarse timestamps
    assert checkpoints.resolve(folder).labels == ("bad", "good")

    (hf / "notes.txt").write_text("added")
    again = checkpoints.resolve(hf)
    assert len(vocabularies) == 2 and again.path == converted.path
    for path in converted.path.iterdir():  # the conversion deleted: made again, not a stale path
        path.unlink()
    converted.path.rmdir()
    assert checkpoints.resolve(hf).weights_path.is_file()
    assert len(vocabularies) == 3


def test_memoized_resolution_follows_the_cache_folder_and_chosen_targets(tmp_path, monkeypatch):
    import os
    import warnings

    import distilframe
    from distilframe.errors import CasingWarning
    from distilframe.testing import write_hf_checkpoint

    hf = write_hf_checkpoint(tmp_path / "hf", seed=35)
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "a"))
    assert checkpoints.resolve(hf).path.is_relative_to(tmp_path / "a")
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "b"))  # another cache: converted there, not reused
    assert checkpoints.resolve(hf).path.is_relative_to(tmp_path / "b")

    target = tmp_path / "chosen"
    assert distilframe.convert(hf, target) == distilframe.convert(hf, target) == target
    for path in target.iterdir():
        path.unlink()
    (target / "mine.txt").write_text("a file of the user's")  # the folder is no conversion any more
    with pytest.raises(CheckpointError, match="not empty"):
        distilframe.convert(hf, target)

    cased = write_checkpoint(tmp_path / "cased", seed=36, cased=True, tokenizer_config=False)
    with pytest.warns(CasingWarning):
        checkpoints.resolve(cased)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CasingWarning)  # once per version of the files
        checkpoints.resolve(cased)
    stamp = (cased / "vocab.txt").stat()
    os.utime(cased / "vocab.txt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**6))
    with pytest.warns(CasingWarning):
        checkpoints.resolve(cased)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("key, value", [("pre_classifier.weight", np.nan),
                                        ("distilbert.embeddings.word_embeddings.weight", np.inf)])
def test_weights_with_nan_or_infinity_are_refused_naming_the_tensor(tmp_path, fresh_manager, key, value, precision):
    # NaN weights gave every text one label (ReLU turns NaN into 0) and infinities NaN vectors, with status ok.
    import pandas as pd

    from distilframe.testing import write_hf_checkpoint

    if precision == "int8":
        pytest.importorskip("onnxruntime")
    safetensors = pytest.importorskip("safetensors.numpy")
    folder = write_hf_checkpoint(tmp_path / "hf", seed=3, num_labels=2)
    state = safetensors.load_file(folder / "model.safetensors")
    state[key].flat[:2] = value
    safetensors.save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"hold 2 values that are NaN or infinite in '(distilbert\.)?{key}'.*"
                                              "damaged.*good copy"):
        pd.Series(["hello world", "a bad film"]).distil.classify(model=str(folder), precision=precision)


def test_an_export_made_before_the_weights_were_checked_is_made_again(tmp_path, fresh_manager):
    import json as _json

    from distilframe import _engine
    from distilframe._manager import ModelManager

    folder = write_checkpoint(tmp_path / "ckpt", seed=4)
    export = ModelManager().get(folder, precision="fp32").engine.folder
    info = _json.loads((export / "info.json").read_text())
    assert info["weights_checked"] == _engine.WEIGHTS_CHECKED
    del info["weights_checked"]  # as an export of an earlier version wrote it
    (export / "info.json").write_text(_json.dumps(info))
    assert not _engine.checked_export(export)
    ModelManager().get(folder, precision="fp32")
    assert _engine.checked_export(export)


def test_dense_weights_with_nan_are_refused(tmp_path, fresh_manager):
    import pandas as pd

    from distilframe.testing import write_sentence_checkpoint

    safetensors = pytest.importorskip("safetensors.numpy")
    folder = write_sentence_checkpoint(tmp_path / "st", seed=5, dense=((16, "Tanh"),))
    dense = next(folder.glob("*_Dense")) / "model.safetensors"
    state = safetensors.load_file(dense)
    state["linear.weight"].flat[0] = np.nan
    safetensors.save_file(state, str(dense))
    with pytest.raises(CheckpointError, match=r"Dense module .* hold 1 values that are NaN or infinite in "
                                              r"linear.weight"):
        pd.Series(["hello world"]).distil.embed(model=str(folder))


@pytest.mark.parametrize("files, says", [
    (["config.json", "vocab.txt"], r"missing model_state.pdparams \(PaddleNLP\) or model.safetensors or "
                                   r"pytorch_model.bin \(Hugging Face\)\. Found"),
    (["model.safetensors", "vocab.txt"], r"missing config.json\. Found"),
    (["config.json", "tokenizer.json"], r"missing model_state.pdparams .*\(Hugging Face\)\. Found"),
    (["model_config.json", "model_state.pdparams"], r"missing vocab.txt\. Found"),
    (["model_state.pdparams", "vocab.txt"], r"missing config.json or model_config.json\. Found"),
])
def test_a_folder_missing_files_names_only_those_it_lacks(tmp_path, files, says):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    with pytest.raises(CheckpointError, match=says):
        checkpoints.resolve(folder)
