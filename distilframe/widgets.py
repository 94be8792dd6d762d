"""Notebook widgets (extra ``widgets``: ipywidgets): a model picker and a run panel.

* :class:`ModelPicker` lists the registered models (and takes a local checkpoint folder), shows
  what each is (language, casing, layers, dimension, parameters, task and labels, on disk,
  loaded), downloads one that is not on disk, and makes the chosen model the session's default
  for ``embed`` and ``classify`` (:func:`distilframe.set_default_model`).
* :class:`RunPanel`, opened with ``df.distil.panel()``: pick a text column, the task, the model
  and options, then Run. The work runs on a background thread, so the kernel stays free; the
  panel shows rows done, rows/s and the ETA, then a preview, and keeps the output frame in
  ``panel.result``. Stop ends the run after the batch in progress: the rows finished until then
  (a prefix of the frame, in slices of ``slice_rows``) stay in ``panel.result``, and the panel
  says how many. Its search box finds the rows nearest to a query (press Enter): over the embedded
  column of ``panel.result`` after an embed run (with the model that made it), else over the column
  with the chosen model; the rows found are in ``panel.found``.
* Errors (no text column, a model not on disk while offline, a bad option) are shown in the
  widget as one readable line; the exception is kept in ``.error``.

Every change a widget makes comes from a thread of its own (downloads, runs): ``wait()`` blocks
until it is done, for scripts and tests.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

try:
    import ipywidgets as w
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('distilframe.widgets needs ipywidgets: pip install "distilframe[widgets]"', name=e.name) from e

from ._defaults import default_model, set_default_model
from ._download import is_on_disk
from ._frame import out_name, with_columns
from ._options import DEFAULTS, LONG_TEXT, POOLINGS, TASKS, RunOptions
from ._pipeline import pandas_result
from ._registry import REGISTRY, base_parameters, find
from ._resolve import resolve
from ._text import is_text

__all__ = ["ModelPicker", "RunPanel"]

LOCAL = "__local__"  # the dropdown entry for a checkpoint folder
UPDATE_EVERY = 0.1  # seconds between progress updates sent to the browser
PREVIEW_ROWS = 5
PREVIEW_CHARS = 80  # longer cells are cut in the preview


class Stopped(Exception):
    """Raised inside a run when Stop was pressed."""


def _message(kind: str, text: str) -> str:
    colors = {"error": "#b00020", "ok": "#1b5e20", "info": "#333", "warn": "#8a5300"}
    return (f'<div class="distilframe-{kind}" style="color:{colors[kind]};white-space:pre-wrap">'
            f"{html.escape(text)}</div>")


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()


class _Background:
    """One background thread at a time; ``wait()`` joins it."""

    _thread: threading.Thread | None = None

    def _start(self, target: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=target, daemon=True, name=f"distilframe-{type(self).__name__}")
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current download or run (if any) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)


# ------------------------------------------------------------------------------------------ ModelPicker

class ModelPicker(w.VBox, _Background):
    """Choose a model: registered ones, or a checkpoint folder; see what it is; download it.

    ``value`` is the chosen model (a registered name, or a folder path). A choice made in the widget
    makes it the session's default for embed, and for classify when it has a classification head
    (``set_default=False``: it does not); opening a picker changes nothing.
    """

    def __init__(self, value: str | os.PathLike | None = None, *, set_default: bool = True) -> None:
        self._set_default = set_default
        # Set while the program (not the user) changes the dropdown; per thread, because traitlets calls
        # observers in the thread that made the change: a refresh in the download thread must not hide
        # a user's choice arriving meanwhile on the kernel's thread.
        self._quiet = threading.local()
        self._downloading = False
        self._listeners: list[Callable[[Any], None]] = []
        start = value if value is not None else default_model("embed")
        spec = find(start) if isinstance(start, str) else None
        self.dropdown = w.Dropdown(options=self._options(), value=spec.name if spec else LOCAL, description="Model",
                                   layout=w.Layout(width="max-content"))
        self.path = w.Text(value="" if spec else str(start), placeholder="/path/to/checkpoint folder",
                           description="Folder", layout=w.Layout(width="32em"))
        self.use_button = w.Button(description="Use folder", icon="folder-open")
        self.download_button = w.Button(description="Download", icon="download", button_style="info")
        self.card = w.HTML()
        self.status = w.HTML()
        self._path_row = w.HBox([self.path, self.use_button])
        self._path_row.layout.display = "none" if spec is not None else None
        self._value: str | os.PathLike | None = None
        super().__init__([w.HBox([self.dropdown, self.download_button]), self._path_row, self.card, self.status])
        self.add_class("distilframe-model-picker")
        self.dropdown.observe(self._on_dropdown, names="value")
        self.use_button.on_click(lambda _: self._use_path())
        self.download_button.on_click(lambda _: self.download())
        if spec is not None:
            self._choose(spec.name, user=False)
        elif self.path.value:
            self._use_path(user=False)
        else:
            self._show_card(None)

    @property
    def value(self) -> str | os.PathLike | None:
        """The chosen model: a registered name, or a checkpoint folder."""
        return self._value

    def on_change(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(model)`` whenever the user chooses a model in this picker."""
        self._listeners.append(callback)

    def select(self, model: str | os.PathLike) -> None:
        """Show ``model`` as chosen, as the program's choice: the session defaults stay as they are."""
        spec = find(model) if isinstance(model, str) else None
        with self._program():
            self.dropdown.value = spec.name if spec else LOCAL
            if spec is None:
                self.path.value = str(model)
                self._path_row.layout.display = None
            else:
                self._path_row.layout.display = "none"
        self._value = spec.name if spec else model
        self._show_card(self._value)

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable every control (the run panel disables them while it runs)."""
        for control in (self.dropdown, self.path, self.use_button):
            control.disabled = not enabled
        self._show_card(self._value, enabled=enabled)

    def refresh(self) -> None:
        """Redraw the dropdown labels and the card (on disk, loaded)."""
        spec = find(self._value) if isinstance(self._value, str) else None
        with self._program():
            self.dropdown.options = self._options()
            self.dropdown.value = spec.name if spec else LOCAL
        self._show_card(self._value)

    def download(self) -> None:
        """Download the chosen registered model in the background (``wait()`` to block)."""
        name = self._value
        spec = find(name) if isinstance(name, str) else None
        if spec is None or self._downloading:
            return
        self._downloading = True
        self.download_button.disabled = True
        self.status.value = _message("info", f"Downloading {spec.name}…")

        def work() -> None:
            try:
                resolve(spec.name)  # downloads (and converts) into the cache
                message = _message("ok", f"{spec.name} is on disk.")
            except Exception as e:  # shown in the widget, not as a traceback
                message = _message("error", _one_line(e))
            self._downloading = False
            self.refresh()
            self.status.value = message

        self._start(work)

    # -- internals

    @staticmethod
    def _options() -> list[tuple[str, str]]:
        labels = [(f"{s.name}{'  ✓ on disk' if is_on_disk(s) else ''}", s.name) for s in REGISTRY]
        return labels + [("Local checkpoint folder…", LOCAL)]

    def _program(self) -> Any:
        picker = self

        class Quiet:
            def __enter__(self) -> None:
                picker._quiet.on = True

            def __exit__(self, *exc: object) -> None:
                picker._quiet.on = False

        return Quiet()

    def _on_dropdown(self, change: dict[str, Any]) -> None:
        if getattr(self._quiet, "on", False):
            return
        if change["new"] == LOCAL:
            self._path_row.layout.display = None
            self._value = None
            self._show_card(None)
            self.status.value = _message("info", "Type a checkpoint folder (PaddleNLP or Hugging Face format), "
                                                 "then Use folder.")
        else:
            self._path_row.layout.display = "none"
            self._choose(change["new"], user=True)

    def _use_path(self, user: bool = True) -> None:
        folder = self.path.value.strip()
        if not folder:
            self.status.value = _message("error", "Type the path of a checkpoint folder first.")
            return
        try:
            resolve(Path(folder))
        except Exception as e:
            self.status.value = _message("error", _one_line(e))
            return
        self._choose(folder, user=user)

    def _choose(self, model: str | os.PathLike, *, user: bool) -> None:
        if user and self._set_default:
            try:
                now = set_default_model(model)
            except Exception as e:
                self.status.value = _message("error", _one_line(e))
                return
            self.status.value = _message("ok", f"Session defaults: embed → {now['embed']} · classify → "
                                               f"{now['classify']}")
        self._value = model
        self._show_card(model)
        if user:
            for callback in self._listeners:
                callback(model)

    def _show_card(self, model: str | os.PathLike | None, *, enabled: bool | None = None) -> None:
        spec = find(model) if isinstance(model, str) else None
        self.download_button.layout.display = "none"
        if model is None:
            self.card.value = ""
            return
        from ._manager import manager

        loaded = manager.loaded_names()
        if spec is not None:
            on_disk = is_on_disk(spec)
            self.download_button.layout.display = None if not on_disk else "none"
            usable = not self.dropdown.disabled if enabled is None else enabled
            self.download_button.disabled = on_disk or self._downloading or not usable
            facts = {
                "Language": spec.languages,
                "Cased": "yes" if spec.cased else "no (lower-cases text)",
                "Layers": spec.layers,
                "Dimension": spec.output_dim,
                "Pooling": spec.pooling or "none (a classifier)",
                "License": spec.license or "not stated on its card",
                "Parameters": f"{spec.parameters / 1e6:.1f} M",
                "Task": ", ".join(spec.tasks) + (f" ({', '.join(spec.labels)})" if spec.labels else ""),
                "On disk": "yes" if on_disk else "no: Download fetches it",
                "Loaded": "yes" if spec.name in loaded else "no",
            }
            title, about = spec.name, spec.description
        else:
            try:
                ckpt = resolve(Path(model))
            except Exception as e:
                self.card.value = _message("error", _one_line(e))
                return
            cfg = ckpt.config
            layers = int(cfg.get("num_hidden_layers", 0))
            params = base_parameters(int(cfg.get("vocab_size", 0)), ckpt.hidden_size, layers,
                                      int(cfg.get("intermediate_size", 4 * ckpt.hidden_size)), ckpt.max_positions)
            facts = {
                "Cased": "no (lower-cases text)" if ckpt.do_lower_case else "yes",
                "Layers": layers,
                "Dimension": ckpt.hidden_size,
                "Parameters": f"{params / 1e6:.1f} M",
                "Task": f"embed, classify ({', '.join(ckpt.labels)})" if ckpt.labels else "embed",
                "On disk": f"yes ({ckpt.path})",
                "Loaded": "yes" if ckpt.name in loaded else "no",
            }
            title, about = str(ckpt.path.name), "A local checkpoint folder."
        rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
        self.card.value = (f"<div class='distilframe-card'><b>{html.escape(title)}</b> — {html.escape(about)}"
                           f"<table>{rows}</table></div>")


# ------------------------------------------------------------------------------------------ RunPanel

class RunPanel(w.VBox, _Background):
    """Embed or classify a column of ``df`` from the notebook, on a background thread.

    After a run, ``result`` is the output frame (every row on success; the finished rows after
    Stop; None after an error or a Stop before any row finished), ``state`` is one of idle,
    running, done, stopped, error, and ``error`` holds the exception of a failed run.
    ``truncated`` counts the rows longer than max length that were truncated.
    """

    def __init__(self, df: pd.DataFrame, *, slice_rows: int = 1024) -> None:  # accessor's panel() passes it on
        if not isinstance(slice_rows, int) or isinstance(slice_rows, bool) or slice_rows < 1:
            raise ValueError(f"Got slice_rows={slice_rows!r} but expected a positive integer.")
        self.df = df
        self.slice_rows = slice_rows
        self.result: pd.DataFrame | None = None
        self.state = "idle"
        self.error: BaseException | None = None
        self.truncated = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # state, result, message and buttons change together
        self._picked = False  # the user chose a model here: the task no longer picks its default

        positions = _text_positions(df)
        self.column = w.Dropdown(options=[(str(df.columns[i]), i) for i in positions], description="Column",
                                 value=_longest(df, positions))
        self.task = w.ToggleButtons(options=list(TASKS), value=TASKS[0], description="Task")
        self.picker = ModelPicker()
        own = "the model's own"
        self.pooling = w.Dropdown(options=[(own, None), *((m, m) for m in POOLINGS)], value=DEFAULTS.pooling,
                                  description="Pooling")
        self.normalize = w.Dropdown(options=[(own, None), ("unit length", True), ("raw", False)],
                                    value=DEFAULTS.normalize, description="Normalize")
        self.max_length = w.IntText(value=0, description="Max length",
                                    tooltip="tokens per input; 0: the model's own (512 for DistilBERT)")
        shown = {"truncate": "truncate", "chunk": "read whole (chunks)"}
        self.long_text = w.Dropdown(options=[(shown[mode], mode) for mode in LONG_TEXT], value=DEFAULTS.long_text,
                                    description="Long texts")
        self.precision = w.Dropdown(options=_precisions(), value=DEFAULTS.precision, description="Precision")
        self.run_button = w.Button(description="Run", icon="play", button_style="success")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=max(1, len(df)), description="Rows")
        self.progress_text = w.HTML()
        self.message = w.HTML()
        self.preview = w.HTML()
        self.found: pd.DataFrame | None = None
        self.query = w.Text(placeholder="a query, then Enter", description="Search", continuous_update=False)
        self.k = w.BoundedIntText(value=PREVIEW_ROWS, min=1, max=1000, description="Rows")
        self.search_button = w.Button(description="Search", icon="search")
        self.search_button.on_click(lambda _: self.search(self.query.value))
        self.search_message = w.HTML()
        self.search_results = w.HTML()
        self.query.observe(lambda change: self.search(change["new"]), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.task.observe(lambda _: self._on_task(), names="value")
        self.picker.on_change(lambda _: setattr(self, "_picked", True))
        children = [w.HTML("<b>distilframe</b>"), self.column, self.task, self.picker,
                    w.HBox([self.pooling, self.normalize]), w.HBox([self.max_length, self.long_text]), self.precision,
                    w.HBox([self.run_button, self.stop_button]), w.HBox([self.progress, self.progress_text]),
                    self.message, self.preview, w.HBox([self.query, self.k, self.search_button]), self.search_message,
                    self.search_results]
        super().__init__(children)
        self.add_class("distilframe-panel")
        for widget, name in ((self.run_button, "run"), (self.stop_button, "stop"), (self.progress, "progress"),
                             (self.progress_text, "progress-text"), (self.message, "message"),
                             (self.preview, "preview"), (self.column, "column"), (self.task, "task"),
                             (self.query, "search"), (self.search_button, "search-button"),
                             (self.search_message, "search-message"),
                             (self.search_results, "search-results")):
            widget.add_class(f"distilframe-{name}")  # stable hooks for styling and browser tests
        self._controls = (self.column, self.task, self.pooling, self.normalize, self.max_length, self.long_text,
                          self.precision)
        if not positions:
            self.state = "error"
            self.error = ValueError("This frame has no text column.")
            shown = ", ".join(f"{c!r} ({df.iloc[:, i].dtype})" for i, c in enumerate(list(df.columns)[:10])) or "none"
            self.message.value = _message("error", f"This frame has no text column (columns: {shown}). Convert one "
                                                   "with df[col].astype('string'), then open the panel again.")
            for control in (*self._controls, self.run_button, self.query):
                control.disabled = True
            self.picker.set_enabled(False)

    def run(self) -> None:
        """Start a run with the current settings (as the Run button does); returns at once."""
        with self._lock:
            if self.state == "running" or self.run_button.disabled:
                return
            if self.busy:  # a search
                self.message.value = _message("warn", "A search is running: press Run again when it has finished.")
                return
            position, task, model = self.column.value, self.task.value, self.picker.value
            try:
                if model is None:
                    raise ValueError("No model chosen: pick one in the list, or type a checkpoint folder and "
                                     "Use folder.")
                # Status is read back for the truncation count; the panel shows its own progress.
                options = RunOptions(max_length=self.max_length.value or None, long_text=self.long_text.value,
                                     pooling=self.pooling.value, normalize=self.normalize.value, progress=False,
                                     return_status=True, precision=self.precision.value)
            except Exception as e:
                self._fail(e)
                return
            self._stop.clear()
            self.result, self.error, self.state, self.truncated = None, None, "running", 0
            self._enable(False)
            self.progress.value, self.progress.bar_style = 0, ""
            self.preview.value = self.progress_text.value = ""
            self.message.value = _message("info", f"Running {task} with {model} on {len(self.df):,} rows…")
            self._start(lambda: self._work(position, task, model, options))

    def stop(self) -> None:
        """Ask the run to stop after the batch in progress (as the Stop button does)."""
        with self._lock:
            if self.state == "running" and not self._stop.is_set():
                self._stop.set()
                self.stop_button.disabled = True
                self.message.value = _message("warn", "Stopping after the current batch…")

    def search(self, query: str) -> None:
        """Find the rows nearest to ``query`` (as pressing Enter in the search box does); returns at once."""
        with self._lock:
            if not isinstance(query, str) or not query.strip():
                self.search_results.value = self.search_message.value = ""
                return
            if self.busy:
                self.search_message.value = _message("warn", "Busy: search again when the run has finished.")
                return
            position = self.column.value
            embedded = out_name(self.df.columns[position], "embedding")
            if self.result is not None and embedded in self.result.columns:
                frame, model = self.result, None  # the embedded column, with the model that made it
            else:  # the model picked here, else the session's search model (a sentence model)
                frame, model = self.df, self.picker.value if self._picked else default_model("search")
            self.search_message.value = _message("info", f"Searching {len(frame):,} rows…")
            self._start(lambda: self._search_work(frame, position, model, query, int(self.k.value)))

    # -- internals

    def _search_work(self, frame: pd.DataFrame, position: int, model: Any, query: str, k: int) -> None:
        from ._similarity import check_queries, frame_embeddings, search

        start = time.perf_counter()
        try:
            texts = frame.iloc[:, position]  # by position: column names may repeat
            found = search(frame, frame_embeddings(frame, texts, model, RunOptions(progress=False,
                                                                              precision=self.precision.value)),
                           check_queries(query), k)
            with self._lock:
                self.found = found
                self.search_message.value = _message(
                    "ok", f"{len(found)} nearest rows to {query!r} in {time.perf_counter() - start:.2f} s "
                          "(score: cosine). They are in panel.found.")
                self.search_results.value = _preview(found, rows=k, kind="search")
        except Exception as e:
            with self._lock:
                self.found, self.search_results.value = None, ""
                self.search_message.value = _message("error", _one_line(e))

    def _on_task(self) -> None:
        self._on_task_controls()
        if not self._picked:  # the model follows the task until the user picks one
            self.picker.select(default_model(self.task.value))

    def _enable(self, enabled: bool) -> None:
        for control in self._controls:
            control.disabled = not enabled
        if enabled:
            self._on_task_controls()
        self.picker.set_enabled(enabled)
        self.run_button.disabled = not enabled
        self.stop_button.disabled = enabled

    def _on_task_controls(self) -> None:
        self.pooling.disabled = self.normalize.disabled = self.task.value != "embed"

    def _work(self, position: int, task: str, model: Any, options: RunOptions) -> None:
        df, n = self.df, len(self.df)
        name = df.columns[position]
        start = time.perf_counter()
        pieces: list[pd.DataFrame] = []
        truncated = 0
        last = [0.0]

        def report(done: int, total: int, base: int, size: int) -> None:
            if self._stop.is_set():
                raise Stopped
            now = time.perf_counter()
            if now - last[0] >= UPDATE_EVERY:
                last[0] = now
                self._show_progress(base + (size * done // total if total else 0), n, now - start, running=True)

        outcome: dict[str, Any] = {}
        try:
            try:
                for base in range(0, n, self.slice_rows) if n else [0]:
                    part = df.iloc[base:base + self.slice_rows, position]
                    added = pandas_result(task, part, model, options, name=name, warn_long=False,
                                          on_progress=lambda d, t, b=base, s=len(part): report(d, t, b, s))
                    status = added.pop(out_name(name, "status"))
                    added = added.drop(columns=[out_name(name, "n_tokens")])
                    truncated += int((status == "truncated").sum())
                    pieces.append(added)
                    if self._stop.is_set() and base + len(part) < n:
                        raise Stopped
                seconds = time.perf_counter() - start
                result = with_columns(df, pd.concat(pieces))
                rate = f" ({n / seconds:,.0f} rows/s)" if seconds > 0 and n else ""
                note = (f" {truncated:,} rows were longer than max length and were truncated (Long texts: read whole "
                        "reads them in chunks)." if truncated else "")
                outcome = dict(state="done", result=result, rows=n, seconds=seconds, bar="success",
                               message=_message("ok", f"Done: {n:,} rows in {seconds:.1f} s{rate}. The frame is in "
                                                      f"panel.result.{note}"), preview=_preview(result))
            except Stopped:
                done = sum(len(p) for p in pieces)
                result = with_columns(df.iloc[:done], pd.concat(pieces)) if done else None
                text = (f"Stopped: {done:,} of {n:,} rows done. panel.result holds those rows (the first {done:,})."
                        if done else f"Stopped before any row finished: no result (0 of {n:,} rows).")
                outcome = dict(state="stopped", result=result, rows=done, seconds=time.perf_counter() - start,
                               bar="warning", message=_message("warn", text),
                               preview=_preview(result) if result is not None else "")
        except Exception as e:  # one readable line in the panel; the exception stays in .error
            outcome = dict(state="error", error=e)
        finally:
            try:
                self.picker.refresh()  # the model is loaded now
            finally:
                with self._lock:  # the final state, message and buttons, all at once
                    self.truncated = truncated
                    if outcome.get("state") in ("done", "stopped"):
                        self.state, self.result = outcome["state"], outcome["result"]
                        self._show_progress(outcome["rows"], n, outcome["seconds"], running=False)
                        self.progress.bar_style = outcome["bar"]
                        self.message.value, self.preview.value = outcome["message"], outcome["preview"]
                    else:
                        self._fail(outcome.get("error") or RuntimeError("the run ended unexpectedly"))
                    self._enable(True)

    def _fail(self, error: BaseException) -> None:
        self.state, self.error, self.result = "error", error, None
        self.progress.bar_style = "danger"
        self.preview.value = ""
        self.message.value = _message("error", _one_line(error))

    def _show_progress(self, rows: int, total: int, seconds: float, *, running: bool) -> None:
        self.progress.value = rows
        rate = rows / seconds if seconds > 0 else 0.0
        eta = f" · ETA {_duration((total - rows) / rate)}" if running and rate > 0 and rows < total else ""
        self.progress_text.value = (f"<span class='distilframe-progress'>{rows:,} / {total:,} rows · "
                                    f"{rate:,.0f} rows/s{eta}</span>")


def _precisions() -> list[tuple[str, str]]:
    """The precision choices here: what auto resolves to, bf16 only where it is native (elsewhere it is refused;
    said to be slower where it is), int8 only where ONNX Runtime is installed."""
    import importlib.util

    from ._config import fast_bf16, native_bf16
    from ._engine import resolve_precision

    try:
        auto = f"auto ({resolve_precision('auto')} here)"
    except ValueError as e:  # DISTILFRAME_PRECISION asks for what this CPU cannot do: Run will say so
        auto = f"auto ({str(e)[:40]}...)"
    choices = [(auto, "auto"), ("fp32 (exact)", "fp32")]
    if native_bf16():
        choices.append(("bf16 (cosine to fp32 ~0.9999)" if fast_bf16() else "bf16 (slower than fp32 on this CPU)",
                        "bf16"))
    if importlib.util.find_spec("onnxruntime") is not None:
        choices.append(("int8 (faster without bf16; cosine ~0.99)", "int8"))
    return choices


def _text_positions(df: pd.DataFrame) -> list[int]:
    return [i for i in range(df.shape[1]) if is_text(df.iloc[:, i])]


def _longest(df: pd.DataFrame, positions: list[int]) -> int | None:
    """The text column most likely to hold prose: the longest strings on average (in the first 1,000 rows)."""
    if not positions:
        return None
    head = df.iloc[:1000]
    lengths = [head.iloc[:, i].dropna().astype(str).str.len().mean() for i in positions]
    return positions[int(np.nanargmax([x if x == x else -1 for x in lengths]))]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _preview(frame: pd.DataFrame, rows: int = PREVIEW_ROWS, kind: str = "preview") -> str:
    head = frame.head(rows).copy()
    for i in range(head.shape[1]):
        column = head.iloc[:, i]
        if str(column.dtype).startswith("fixed_size_list"):
            from ._frame import to_numpy

            values = to_numpy(column)
            head.isetitem(i, [("—" if np.isnan(v).all()
                               else f"[{', '.join(f'{x:.3f}' for x in v[:3])}, …] ({len(v)})")
                              for v in values])
        elif pd.api.types.is_string_dtype(column.dtype) or column.dtype == object:
            head.isetitem(i, [v[:PREVIEW_CHARS] + "…" if isinstance(v, str) and len(v) > PREVIEW_CHARS else v
                              for v in column])
    table = head.to_html(classes=f"distilframe-{kind}-table", border=0, escape=True, na_rep="—")
    title = f"Preview ({min(len(frame), rows)} of {len(frame):,} rows)" if kind == "preview" else ""
    return f"<div style='overflow-x:auto'>{title}{table}</div>"
