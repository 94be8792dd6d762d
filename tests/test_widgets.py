"""The notebook widgets, driven from Python: set values, click, watch progress and results."""

import html
import re
import threading
import time

import numpy as np
import pandas as pd
import pytest

import distilframe
from conftest import SST2
from distilframe._defaults import default_model, reset_default_models
from distilframe.widgets import ModelPicker, RunPanel

TEXTS = ["the cat is happy", "a bad movie", None, "hello world", "the cat is happy", "   ", "good film, i love it",
         "a dog", "the weather is nice today", "bad", "", "i love it"] * 3


@pytest.fixture(autouse=True)
def session_defaults():
    reset_default_models()
    yield
    reset_default_models()


@pytest.fixture
def frame():
    return pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS, "score": np.linspace(0, 1, len(TEXTS)),
                         "title": [f"row {i}" for i in range(len(TEXTS))]})


def shown(widget) -> str:
    """The text an HTML widget shows (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", widget.value))


def uncached(frame: pd.DataFrame, tag: str) -> pd.DataFrame:
    """The frame with texts no other test ran: the result cache cannot skip the model for them."""
    return frame.assign(text=[f"{t} {tag} {i}" if isinstance(t, str) and t.strip() else t for i, t in enumerate(frame["text"])])


def held_batches(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """(started, release): each model batch sets ``started``, then waits for ``release``."""
    from distilframe import _run as executor

    started, release = threading.Event(), threading.Event()
    real = executor._forward

    def forward(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(executor, "_forward", forward)
    return started, release


def finish(panel: RunPanel) -> RunPanel:
    panel.wait(120)
    assert not panel.busy
    return panel


# ----------------------------------------------------------------------------------------- defaults

def test_session_defaults_are_what_embed_and_classify_use(frame, checkpoint_dir):
    assert default_model("embed") == distilframe.DEFAULT_EMBEDDER
    now = distilframe.set_default_model("cased")
    assert now == {"embed": "distilbert-base-cased", "classify": distilframe.DEFAULT_CLASSIFIER,
                   "search": "sentence-transformers/all-MiniLM-L6-v2"}  # not a sentence model: search keeps its own
    small = frame.iloc[:4]
    np.testing.assert_array_equal(distilframe.to_numpy(small.distil.embed("text")["text_embedding"]),
                                  distilframe.to_numpy(small.distil.embed("text", model="cased")["text_embedding"]))
    assert distilframe.set_default_model(checkpoint_dir)["embed"] == checkpoint_dir
    with pytest.raises(distilframe.UnsupportedTaskError):
        distilframe.set_default_model("uncased", task="classify")
    with pytest.raises(distilframe.UnknownModelError):
        distilframe.set_default_model("no-such-model")


# ------------------------------------------------------------------------------------------- picker

def test_picker_lists_every_registered_model_and_shows_its_card():
    picker = ModelPicker()
    assert picker._path_row.layout.display == "none"  # the folder field shows for "Local checkpoint folder…" only
    names = [value for _, value in picker.dropdown.options]
    assert names[:-1] == [spec.name for spec in distilframe._registry.REGISTRY] and names[-1] == "__local__"
    assert picker.value == distilframe.DEFAULT_EMBEDDER
    for fact in ("Language", "Cased", "Layers", "Dimension", "Parameters", "Task", "On disk", "Loaded"):
        assert fact in picker.card.value
    assert "on disk" in dict((v, k) for k, v in picker.dropdown.options)[picker.value]


def test_choosing_a_model_sets_the_session_defaults():
    picker = ModelPicker()
    picker.dropdown.value = SST2
    assert picker.value == SST2
    assert default_model("embed") == SST2 and default_model("classify") == SST2
    assert "NEGATIVE, POSITIVE" in picker.card.value
    picker.dropdown.value = "distilbert-base-cased"  # a base model: embed only; classify keeps SST-2
    assert default_model("embed") == "distilbert-base-cased" and default_model("classify") == SST2
    assert "classify → " + SST2 in shown(picker.status)


def test_picker_takes_a_local_checkpoint_and_reports_a_bad_one(classifier_dir, tmp_path):
    picker = ModelPicker()
    picker.dropdown.value = "__local__"
    assert picker.value is None and picker._path_row.layout.display is None
    picker.path.value = str(tmp_path / "nothing-here")
    picker.use_button.click()
    assert "distilframe-error" in picker.status.value and "nothing-here" in shown(picker.status)
    assert picker.value is None
    picker.path.value = str(classifier_dir)
    picker.use_button.click()
    assert picker.value == str(classifier_dir)
    assert default_model("classify") == str(classifier_dir)
    assert "negative, neutral, positive" in picker.card.value


def test_download_button_fetches_a_missing_model_or_says_why_not(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "empty-home"))
    picker = ModelPicker(set_default=False)
    assert picker.download_button.layout.display is None  # not on disk here: the button shows
    assert "no: Download fetches it" in picker.card.value
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
    picker.download_button.click()
    picker.wait(60)
    assert "distilframe-error" in picker.status.value
    assert "Traceback" not in shown(picker.status) and "offline" in shown(picker.status).lower()


def test_download_button_really_downloads(bos, empty_home, monkeypatch):
    from servers import StaticServer

    server = StaticServer(bos)  # PaddleNLP's server, on 127.0.0.1
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        picker = ModelPicker(set_default=False)
        assert "no: Download fetches it" in picker.card.value
        picker.download_button.click()
        picker.wait(60)
    finally:
        server.close()
    assert "is on disk" in shown(picker.status), picker.status.value
    assert "On disk</th><td>yes" in picker.card.value
    assert picker.download_button.layout.display == "none"
    assert (empty_home / "models/distilbert-base-uncased/model_state.pdparams").is_file()


# -------------------------------------------------------------------------------------------- panel

def test_panel_lists_text_columns_only_and_runs_embed_like_the_accessor(frame):
    panel = frame.distil.panel()
    assert [label for label, _ in panel.column.options] == ["text", "title"]
    assert panel.column.label == "text"  # the longer strings: the likely prose
    panel.pooling.value = "cls"
    panel.run_button.click()
    assert panel.state in ("running", "done"), panel.message.value  # returns at once; the work is on a thread
    finish(panel)
    assert panel.state == "done", panel.message.value
    want = frame.distil.embed("text", pooling="cls")
    assert list(panel.result.columns) == list(want.columns)
    np.testing.assert_array_equal(distilframe.to_numpy(panel.result["text_embedding"]),
                                  distilframe.to_numpy(want["text_embedding"]))
    assert panel.progress.value == panel.progress.max == len(frame)
    assert f"{len(frame)} / {len(frame)} rows" in panel.progress_text.value and "rows/s" in panel.progress_text.value
    assert "Done" in shown(panel.message)
    assert panel.preview.value.count("<tr") == 1 + 5  # header and five rows
    assert panel.run_button.disabled is False and panel.stop_button.disabled is True


def test_panel_classifies_in_slices_with_the_same_result(frame):
    panel = frame.distil.panel(slice_rows=7)
    panel.task.value = "classify"
    panel.picker.dropdown.value = SST2
    assert panel.pooling.disabled and panel.normalize.disabled
    panel.run()
    finish(panel)
    want = frame.distil.classify("text", model=SST2)
    pd.testing.assert_frame_equal(panel.result, want)


def test_stop_ends_the_run_after_the_current_batch_and_keeps_the_finished_rows(frame, monkeypatch):
    from distilframe import _run as executor

    frame = uncached(frame, "stop-after-batch")
    panel = frame.distil.panel(slice_rows=5)
    batches = []
    release = threading.Event()
    real = executor._forward

    def forward(*args, **kwargs):  # the 3rd batch waits until Stop has been pressed
        batches.append(1)
        if len(batches) == 3:
            release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(executor, "_forward", forward)
    panel.run_button.click()
    deadline = time.monotonic() + 60
    while len(batches) < 3 and panel.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(batches) == 3, "the run ended before its third batch"
    panel.stop_button.click()
    release.set()
    finish(panel)
    assert panel.state == "stopped"
    done = len(panel.result)
    assert 0 < done < len(frame) and done % 5 == 0 and len(batches) == 3  # no batch after the stop
    assert "Stopped" in shown(panel.message) and f"{done} of {len(frame)} rows" in shown(panel.message)
    pd.testing.assert_frame_equal(panel.result, frame.iloc[:done].distil.embed("text"))


def test_stop_before_any_row_finished_leaves_no_result(frame, monkeypatch):
    frame = uncached(frame, "stop-before-any")
    panel = frame.distil.panel()  # one slice: nothing is finished before the slice is
    started, release = held_batches(monkeypatch)
    panel.run()
    assert started.wait(60)
    panel.stop()
    release.set()
    finish(panel)
    assert panel.state == "stopped" and panel.result is None
    assert "no result" in shown(panel.message)


def test_errors_show_in_the_panel_as_one_readable_line(frame, monkeypatch, tmp_path):
    numbers = pd.DataFrame({"a": [1, 2], "b": [0.5, 0.1]})
    panel = numbers.distil.panel()
    assert panel.state == "error" and panel.run_button.disabled
    assert "no text column" in shown(panel.message) and "'a' (int64)" in shown(panel.message)

    panel = frame.distil.panel()
    panel.max_length.value = 2
    panel.run()
    assert panel.state == "error" and "max_length=2" in shown(panel.message) and not panel.busy

    panel = frame.distil.panel()
    panel.task.value = "classify"
    panel.picker.dropdown.value = "distilbert-base-uncased"
    panel.run()
    finish(panel)
    assert panel.state == "error" and "no trained classification head" in shown(panel.message)

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "empty"))  # nothing on disk, and offline
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
    distilframe._manager.manager.clear()
    panel = frame.distil.panel()
    panel.run()
    finish(panel)
    assert panel.state == "error" and isinstance(panel.error, distilframe.DistilFrameError)
    assert "Traceback" not in shown(panel.message) and "distilframe-error" in panel.message.value
    assert panel.run_button.disabled is False  # ready for another try


# ------------------------------------------------------------------------------------ review fixes

def test_opening_widgets_changes_no_default_and_the_model_follows_the_task(frame, classifier_dir):
    distilframe.set_default_model(classifier_dir, task="classify")
    panel = frame.distil.panel()
    ModelPicker()
    assert default_model("classify") == classifier_dir and default_model("embed") == distilframe.DEFAULT_EMBEDDER
    assert panel.picker.value == distilframe.DEFAULT_EMBEDDER
    panel.task.value = "classify"  # no model picked here yet: the classify default is shown
    assert panel.picker.value == classifier_dir
    panel.task.value = "embed"
    assert panel.picker.value == distilframe.DEFAULT_EMBEDDER
    panel.picker.dropdown.value = "distilbert-base-cased"  # the user's choice now sticks
    panel.task.value = "classify"
    assert panel.picker.value == "distilbert-base-cased"


def test_the_precision_list_offers_what_this_cpu_can_run_and_reaches_the_run(frame):
    from distilframe._config import native_bf16

    panel = frame.distil.panel()
    values = [value for _, value in panel.precision.options]
    assert values == ["auto", "fp32", *(["bf16"] if native_bf16() else []), "int8"]
    assert panel.precision.options[0][0] == "auto (fp32 here)"  # the suite pins DISTILFRAME_PRECISION=fp32
    panel.precision.value = "int8"
    panel.run_button.click()
    finish(panel)
    assert panel.state == "done", panel.message.value
    want = frame.distil.embed("text", precision="int8")
    np.testing.assert_array_equal(distilframe.to_numpy(panel.result["text_embedding"]),
                                  distilframe.to_numpy(want["text_embedding"]))
    assert panel.result.attrs["distilframe"][-1]["metadata"]["precision"] == "int8"


def test_controls_are_locked_while_running_and_stop_after_the_end_changes_nothing(frame, monkeypatch):
    frame = uncached(frame, "locked")
    started, release = held_batches(monkeypatch)
    panel = frame.distil.panel()
    panel.run()
    assert started.wait(60)
    locked = [panel.column, panel.task, panel.pooling, panel.max_length, panel.long_text, panel.precision,
              panel.picker.dropdown, panel.run_button]
    assert all(c.disabled for c in locked) and not panel.stop_button.disabled
    panel.run()  # a second Run while running: ignored
    release.set()
    finish(panel)
    assert panel.state == "done"
    done_message = panel.message.value
    panel.stop()  # too late: nothing changes
    assert panel.state == "done" and panel.message.value == done_message
    assert not any(c.disabled for c in locked) and panel.stop_button.disabled
    assert "ETA" not in panel.progress_text.value
    panel.run()  # at once again: the state, not the thread, says whether a run is going
    assert panel.state in ("running", "done")
    finish(panel)
    assert panel.state == "done"


def test_a_bad_option_after_a_run_clears_the_old_result(frame):
    panel = frame.distil.panel()
    panel.run()
    finish(panel)
    assert panel.result is not None and panel.preview.value
    panel.max_length.value = -1
    panel.run()
    assert panel.state == "error" and panel.result is None and panel.preview.value == ""


def test_long_texts_are_counted_in_the_panel_not_warned_from_its_thread(recwarn):
    long = " ".join(["word"] * 2000)
    df = pd.DataFrame({"text": [long, "short text", long + " again"]})
    panel = df.distil.panel()
    panel.max_length.value = 32
    panel.run()
    finish(panel)
    assert panel.state == "done" and panel.truncated == 2
    assert "2 rows were longer than max length" in shown(panel.message)
    assert not [w for w in recwarn if issubclass(w.category, distilframe.TruncationWarning)]
    assert "word word" in panel.preview.value and len(panel.preview.value) < 3000  # long cells are cut

    panel.long_text.value = "chunk"
    panel.run()
    finish(panel)
    assert panel.truncated == 0
    pd.testing.assert_frame_equal(panel.result, df.distil.embed("text", max_length=32, long_text="chunk"))


def test_duplicate_column_names_and_a_failed_download_can_be_retried(monkeypatch, tmp_path):
    df = pd.DataFrame([["a cat", "a dog"], ["a bird", "a fish"]], columns=["t", "t"])
    panel = df.distil.panel()
    assert [v for _, v in panel.column.options] == [0, 1]
    panel.column.value = 1
    panel.run()
    finish(panel)
    assert panel.state == "done", panel.message.value
    np.testing.assert_array_equal(distilframe.to_numpy(panel.result["t_embedding"]),
                                  distilframe.to_numpy(df.iloc[:, 1].distil.embed()))

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
    picker = ModelPicker(set_default=False)
    picker.download_button.click()
    picker.wait(60)
    assert "distilframe-error" in picker.status.value
    assert picker.download_button.disabled is False  # the user can try again


def test_the_search_box_finds_the_nearest_rows_of_the_embedded_column(frame, count_runs):
    from distilframe._manager import get_model

    panel = frame.distil.panel()
    panel.query.value = "   "  # blank: nothing happens
    assert panel.search_results.value == "" and not panel.busy
    query = frame["text"].iloc[3]
    panel.k.value = 3
    panel.query.value = query  # before a run: the column with the chosen model
    panel.wait()
    assert panel.found is not None and len(panel.found) == 3, panel.search_message.value
    assert panel.found["text"].iloc[0] == query and panel.found.index[0] == frame.index[3]
    pd.testing.assert_frame_equal(panel.found, frame.distil.search(query, "text", k=3, model=panel.picker.value))
    finish(panel.run() or panel)
    seen = count_runs(get_model(panel.picker.value))
    query = f"a query no test ran {time.time()}"
    panel.query.value = query  # after an embed run: panel.result's column; only the query runs
    panel.wait()
    assert seen == [1], panel.search_message.value
    pd.testing.assert_frame_equal(panel.found, panel.result.distil.search(query, "text", k=3))
    assert panel.search_results.value.count("<tr") == 1 + 3 and "panel.found" in shown(panel.search_message)
    panel.found = None
    panel.search_button.click()  # the same query again: the button searches without a change of text
    panel.wait()
    assert panel.found is not None and len(panel.found) == 3
