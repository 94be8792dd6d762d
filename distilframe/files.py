"""Embed or classify a table file, for ETL jobs: streamed in, written atomically, resumable.

    INPUT ─► chunks of rows ─► executor ─► <OUTPUT>.distilframe-parts/part-NNNNNN.parquet
                                              (each part renamed into place when complete)
                       all parts done ─► <OUTPUT>.tmp-XXXX ─► rename ─► OUTPUT

* Input: Parquet (read as record batches, never whole), CSV/TSV and JSON Lines
  (streamed), Excel ``.xlsx`` (extra ``excel``).
* Output: embeddings to Parquet, as a fixed-size list of float32 with key-value
  metadata (model, checkpoint content hash, pooling, normalize, max_length, dim,
  distilframe version, created-at, job hash); classification to Parquet, CSV/TSV or ``.xlsx``.
* Atomic: OUTPUT only ever holds a complete file.
* Resumable: finished chunks stay in the parts folder; ``resume=True`` checks that
  the input file and the options are those of the interrupted run and continues
  from the first missing chunk. The result is identical row for row. On a Parquet OUTPUT that
  this same job already finished (its ``job_hash``), it does nothing and says so.

The same pipeline, row rules (``_text``) and output schema (``_frame``) as the pandas accessor.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import _fs as fs
from ._frame import META_PREFIX, OutputSchema, file_metadata
from ._options import DEFAULTS, RunOptions
from ._text import missing_column, texts
from .errors import DistilFrameError, FileError

__all__ = ["FileError", "FileResult", "classify_file", "embed_file", "read_metadata"]

DEFAULT_CHUNK_ROWS = 10_000
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".xlsx": "excel"}
WRITERS = {"embed": (".parquet", ".pq"), "classify": (".parquet", ".pq", ".csv", ".tsv", ".xlsx")}
PARTS_SUFFIX = ".distilframe-parts"
LOCK_SUFFIX = ".distilframe-lock"  # held by the job writing OUTPUT: a second job on it is refused
PART_JOB_KEY = b"distilframe_part_job"  # which job wrote a part


@dataclass(frozen=True)
class FileResult:
    """What a file job did. ``already_complete``: ``resume=True`` found OUTPUT finished by this same job and
    computed nothing (``chunks`` is 0, ``rows`` those of OUTPUT)."""

    output: Path
    rows: int
    chunks: int
    resumed_chunks: int
    seconds: float
    already_complete: bool = False


def embed_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    column: str,
    model: str | os.PathLike | None = None,
    keep: Sequence[str] | None = None,
    pooling: str | None = DEFAULTS.pooling,
    normalize: bool | None = DEFAULTS.normalize,
    max_length: int | None = DEFAULTS.max_length,
    prompt: str | None = DEFAULTS.prompt,
    prompt_name: str | None = DEFAULTS.prompt_name,
    long_text: str = DEFAULTS.long_text,
    stride: int = DEFAULTS.stride,
    batch_size: int | None = DEFAULTS.batch_size,
    errors: str = DEFAULTS.errors,
    resume: bool = False,
    overwrite: bool = False,
    sheet: str | None = None,
    na_strings: bool = False,
    progress: bool | None = DEFAULTS.progress,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision: str = DEFAULTS.precision,
    num_threads: int | None = DEFAULTS.num_threads,
    cache: bool = DEFAULTS.cache,
) -> FileResult:
    """Embed the text column of a file into a Parquet file of ``keep`` columns plus ``<column>_embedding``.

    Parameters
    ----------
    input
        ``.parquet``, ``.csv``, ``.tsv``, ``.jsonl`` or ``.xlsx``.
    output
        A ``.parquet`` file; written only when complete.
    column
        The text column.
    keep
        Input columns to carry over (default: all of them).
    pooling, normalize, max_length, prompt, prompt_name, long_text, stride, batch_size, errors
        As in ``DataFrame.distil.embed`` (None: the model's own settings).
    resume
        Continue an interrupted run of the same command from its last finished chunk. When OUTPUT is a
        Parquet file this same job already finished (the input file and options unchanged, as its
        ``job_hash`` metadata records), nothing is computed: the result says ``already_complete``.
    overwrite
        Replace an existing OUTPUT (otherwise it is an error).
    sheet
        The worksheet of an ``.xlsx`` INPUT (default: the first).
    na_strings
        Read CSV cells such as ``NA``, ``null``, ``nan``, ``N/A`` and ``#N/A`` as missing, as pandas does.
        By default they are text, and only an empty cell is missing. For CSV, TSV and ``.xlsx`` (where a
        formula's error reads as ``#N/A``...); refused for Parquet and JSON Lines, which record nulls.
    progress
        Rows/s and ETA on stderr; None shows it when stderr is a terminal.
    chunk_rows
        Rows per chunk: memory use and resume granularity.
    precision, num_threads, cache
        As in ``DataFrame.distil.embed``; the precision used is recorded in the metadata.

    Examples
    --------
    >>> embed_file("reviews.parquet", "embeddings.parquet", column="text", keep=["id"])  # doctest: +SKIP
    FileResult(output=PosixPath('embeddings.parquet'), rows=1000000, chunks=100, resumed_chunks=0, ...)
    """
    return _Job("embed", input, output, column, model, keep, RunOptions.pick(locals()), resume, overwrite,
                chunk_rows, sheet, na_strings).run()


def classify_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    column: str,
    model: str | os.PathLike | None = None,
    keep: Sequence[str] | None = None,
    all_scores: bool = DEFAULTS.all_scores,
    max_length: int | None = DEFAULTS.max_length,
    long_text: str = DEFAULTS.long_text,
    stride: int = DEFAULTS.stride,
    batch_size: int | None = DEFAULTS.batch_size,
    errors: str = DEFAULTS.errors,
    resume: bool = False,
    overwrite: bool = False,
    sheet: str | None = None,
    na_strings: bool = False,
    progress: bool | None = DEFAULTS.progress,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision: str = DEFAULTS.precision,
    num_threads: int | None = DEFAULTS.num_threads,
    cache: bool = DEFAULTS.cache,
) -> FileResult:
    """Classify the text column of a file: the same rows plus ``<column>_label`` and ``<column>_score``.

    OUTPUT may be ``.parquet``, ``.csv``, ``.tsv`` or ``.xlsx``. From an ``.xlsx`` INPUT to an ``.xlsx``
    OUTPUT the workbook is kept: a copy of it, with the label and score columns added to the right of
    the classified sheet (``sheet``); its other sheets, formats, formulas and merged cells are unchanged.
    Other options as in :func:`embed_file` and ``DataFrame.distil.classify``.

    Examples
    --------
    >>> classify_file("reviews.xlsx", "reviews-labelled.xlsx", column="review")  # doctest: +SKIP
    """
    return _Job("classify", input, output, column, model, keep, RunOptions.pick(locals()), resume, overwrite,
                chunk_rows, sheet, na_strings).run()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The distilframe metadata and row count of a Parquet file written by :func:`embed_file`, or of a
    folder of Parquet parts written by ``ddf.distil.to_parquet`` (rows summed over the parts)."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted([*path.glob("*.parquet"), *path.glob("*.pq")]) if path.is_dir() else [path]
    if not files:
        raise FileError(f"{path} is a folder without .parquet files.")
    if not path.is_dir() and path.is_file() and _magic(path) not in (b"PAR1", None):
        raise FileError(f"{path.name!r} is not a Parquet file: only Parquet records the job that wrote it (a "
                        f"{path.suffix or 'file without extension'} holds the rows alone). Read it as it is, or "
                        "write the job's OUTPUT as .parquet.")
    try:
        metas = [pq.read_metadata(f) for f in files]
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise FileError(f"Could not read {path} as Parquet: {e}") from e

    descriptions = [{k.decode()[len(META_PREFIX):]: v.decode() for k, v in (m.metadata or {}).items()
                     if k.decode().startswith(META_PREFIX)} for m in metas]
    meta, out = metas[0], dict(descriptions[0])
    # One result's parts (ddf.distil.to_parquet) describe it alike, but for what each worker resolved itself.
    per_worker = ("precision", "int8_recheck", "distilframe_version")
    for key in per_worker:
        values = sorted({d[key] for d in descriptions if key in d})
        if len(values) > 1:
            out[key] = ", ".join(values)
    for theirs, f in zip(descriptions[1:], files[1:]):
        differ = sorted(k for k in {*out, *theirs} - set(per_worker) if out.get(k) != theirs.get(k))
        if differ:
            raise FileError(f"{path} holds Parquet files of different results ({files[0].name} and {f.name} differ "
                            f"in {', '.join(differ)}): name one file, or a folder of one result's parts.")
    out["rows"] = sum(m.num_rows for m in metas)
    out["columns"] = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
    out["columns"] = list(dict.fromkeys(out["columns"]))
    return out


# ----------------------------------------------------------------------------------------- the job

class _Job:
    def __init__(self, task: str, input: Any, output: Any, column: str, model: Any, keep: Sequence[str] | None,
                 options: RunOptions, resume: bool, overwrite: bool, chunk_rows: int, sheet: str | None = None,
                 na_strings: bool = False) -> None:
        if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
            raise ValueError(f"Got chunk_rows={chunk_rows!r} but expected a positive integer, such as 10000.")
        if sheet is not None and not isinstance(sheet, str):
            raise ValueError(f"Got sheet={sheet!r} but expected the name of a worksheet, such as 'Sheet1'.")
        for flag, value in (("resume", resume), ("overwrite", overwrite), ("na_strings", na_strings)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Got {flag}={value!r} but expected True or False.")
        self.task = task
        self.input = Path(input).expanduser()
        self.output = Path(output).expanduser()
        self.column = column
        self.model = model
        self.keep = list(keep) if keep is not None else None
        self.options = options.replace(progress=False)  # the job shows its own progress, per row
        self.progress = options.progress
        self.resume = resume
        self.overwrite = overwrite
        self.chunk_rows = chunk_rows
        self.parts = self.output.with_name(self.output.name + PARTS_SUFFIX)
        self.sheet = sheet
        self.na_strings = bool(na_strings)

    def run(self) -> FileResult:
        reader = self._check_paths()
        lock = self.output.with_name(self.output.name + LOCK_SUFFIX)
        owner = (f"pid {os.getpid()} on {socket.gethostname()}, started "
                 f"{datetime.now().astimezone().isoformat(timespec='seconds')}: {' '.join(sys.argv) or self.task}")
        try:
            with fs.exclusive(lock, owner):
                return self._run(reader)
        except fs.Busy as busy:
            holder = busy.owner or "holder unknown"
            raise FileError(f"Another distilframe job is writing {str(self.output)!r} ({holder}). Wait for it to "
                            "finish, or write to another OUTPUT.") from None
        except PermissionError as e:
            if Path(e.filename or "").parent not in (self.output.parent, self.parts):  # not OUTPUT's lock or parts
                raise
            raise FileError(f"Cannot write in the output folder {str(self.output.parent)!r} ({e.strerror}): "
                            "write OUTPUT to a folder of yours, or ask for write access to this one.") from None

    def _run(self, reader: "_Reader") -> FileResult:
        start = time.perf_counter()
        names = reader.names
        keep = names if self.keep is None else self.keep  # checked by _check_paths
        self.rows = reader.rows(self.column)

        from ._pipeline import load

        # Before anything is written: a failure leaves nothing.
        loaded = load(self.task, self.model, self.options)
        meta = file_metadata(self.task, self.column, self.options, loaded)
        self.outputs = list(OutputSchema.for_model(self.task, self.column, self.options, loaded).kinds)
        self._check_outputs(names)
        state = self._state(meta, reader)
        if self.resume and not self.overwrite and self.output.exists():  # _check_paths let it through
            return self._already_complete(meta, state, start)
        done = self._prepare_parts(state)

        bar = _progress_bar(self.progress, reader.total_rows)
        try:
            rows, n_chunks, resumed = self._chunks(reader, keep, loaded, done, bar)
        except (DistilFrameError, ValueError, TypeError):
            # Bad data: the same command would fail again, and a fixed input cannot resume; leave nothing.
            # (An interruption, a kill or a full disk keeps the finished parts, for --resume.)
            shutil.rmtree(self.parts, ignore_errors=True)
            raise
        finally:
            bar.close()
        if n_chunks == 0:  # an empty input still gives a complete, empty output
            empty = reader.empty_table([*dict.fromkeys([*keep, self.column])])
            _write_part(self._process(empty, keep, loaded, row_offset=0), self._part(0), self.job)
            n_chunks = 1
        self._finish({**meta, "job_hash": _job_hash(state)}, n_chunks, rows, reader)
        return FileResult(output=self.output, rows=rows, chunks=n_chunks, resumed_chunks=resumed,
                          seconds=time.perf_counter() - start)

    def _chunks(self, reader: "_Reader", keep: list[str], loaded, done: dict[int, int],
                bar) -> tuple[int, int, int]:
        """Compute the chunks not done yet into parts: (rows, chunks, chunks resumed)."""
        rows = n_chunks = resumed = 0
        include = [*dict.fromkeys([*keep, self.column])]
        for index, table in enumerate(reader.chunks(self.chunk_rows, include, self.column)):
            n_chunks = index + 1
            part = self._part(index)
            if done.get(index) == len(table):  # finished by the interrupted run
                resumed += 1
            else:
                if index in done:
                    _note(f"{part.name} of the interrupted run has {done[index]} rows, not "
                          f"{len(table)}: computing it again.")
                _write_part(self._process(table, keep, loaded, row_offset=rows), part, self.job)
            rows += len(table)
            bar.update(len(table))
        return rows, n_chunks, resumed

    def _check_repeated(self, reader: "_Reader", keep: list[str]) -> None:
        """Refuse, before any model work, columns that are not one name each: a name given twice in ``keep``, or
        a header that repeats a name the job reads (the readers would keep one of the columns, or the job would
        fail only when writing OUTPUT, after every chunk)."""
        twice = [name for name, n in Counter(self.keep or []).items() if n > 1]
        if twice:
            raise FileError(f"Got --keep {','.join(map(str, self.keep))} (keep={self.keep!r}), which names "
                            f"{', '.join(map(repr, twice))} more than once: name each column once.")
        read = {*keep, self.column}
        repeated = [name for name, n in Counter(reader.names).items() if n > 1 and name in read]
        if not repeated:
            return
        shown = ", ".join(map(repr, repeated))
        others = [name for name in repeated if name != self.column]
        if not others:
            hint = ""
        elif self.keep is None:
            hint = (f", or pass --keep (keep=[...]) with the columns to carry over, without "
                    f"{', '.join(map(repr, others))}")
        else:
            hint = f", or leave {', '.join(map(repr, others))} out of --keep (keep=[...])"
        if reader.kind == "parquet":
            raise FileError(f"{self.input.name!r} has more than one column named {shown} (its schema repeats the "
                            f"name): write it again with a name of its own for each column{hint}.")
        where = f"Sheet {reader.sheet!r} of {self.input.name!r}" if reader.kind == "excel" else repr(self.input.name)
        raise FileError(f"{where} has more than one column named {shown} (its header repeats the name): rename the "
                        f"repeated header cells so that each column has a name of its own{hint}.")

    def _check_outputs(self, names: list[str]) -> None:
        """An input column with the name of an output column: replaced by it, as the accessor replaces a column of
        the same name, with a note; refused when ``keep`` asks for it by name, since it could not be kept."""
        clash = [name for name in self.outputs if name in names]
        asked = [name for name in clash if self.keep is not None and name in self.keep]
        if asked:
            shown = ", ".join(map(repr, asked))
            raise FileError(f"Got --keep {','.join(map(str, self.keep))} (keep={self.keep!r}), but the {self.task} "
                            f"job writes its own {shown} in OUTPUT, which would replace the input's. Leave {shown} out "
                            f"of --keep, or rename the column in {self.input.name!r}.")
        if clash:
            shown = ", ".join(map(repr, clash))
            _note(f"{self.input.name!r} has {'columns' if len(clash) > 1 else 'a column'} {shown} with the name of "
                  f"an output column: OUTPUT holds this job's {shown} in its place. To keep the input's as well, "
                  "rename it in the input file.")

    def _part(self, index: int) -> Path:
        return self.parts / f"part-{index:06d}.parquet"

    def _check_paths(self) -> "_Reader":
        kind = READERS.get(self.input.suffix.lower())
        if kind is None:
            raise FileError(f"Cannot read {self.input.name!r}: unsupported extension {self.input.suffix!r}. "
                            f"Supported: {', '.join(sorted(READERS))}.")
        if not self.input.is_file():
            raise FileError(f"Input file {str(self.input)!r} does not exist.")
        if self.output.suffix.lower() not in WRITERS[self.task]:
            raise FileError(f"Cannot write {self.task} results to {self.output.name!r}: the output must end with "
                            f"{', '.join(WRITERS[self.task])}.")
        if not self.output.parent.is_dir():
            raise FileError(f"The output folder {str(self.output.parent)!r} does not exist.")
        if self.sheet is not None and kind != "excel":
            raise FileError(f"Got --sheet {self.sheet!r} but {self.input.name!r} is not a spreadsheet (.xlsx).")
        if self.na_strings and kind not in ("csv", "tsv", "excel"):
            raise FileError(f"Got --na-strings (na_strings=True) but {self.input.name!r} is not a CSV, TSV or .xlsx "
                            "file: its missing values are recorded as nulls, and its texts are texts. Leave the "
                            "option out.")
        reader = _Reader(self.input, kind, sheet=self.sheet, na_strings=self.na_strings)
        self._check_columns(reader)  # a wrong --column is named even when OUTPUT is there
        if self.output.exists() and not self.overwrite:
            if not self.resume:
                raise FileError(f"Output {str(self.output)!r} already exists. Pass --overwrite (overwrite=True) "
                                "to replace it.")
            if self.output.suffix.lower() not in (".parquet", ".pq"):  # checked against this job in _run
                raise FileError(f"Output {str(self.output)!r} already exists, and a {self.output.suffix} file records "
                                "nothing of the job that made it, so --resume cannot tell whether it is this job's "
                                "finished output. Pass --overwrite (overwrite=True) to compute it again, or write to "
                                "another OUTPUT.")
        return reader

    def _check_columns(self, reader: "_Reader") -> None:
        """The text column and the kept ones are in the file, each under one name."""
        names = reader.names
        if self.column not in names:
            error = missing_column(self.column, names)
            if reader.kind == "excel":
                error.args = (f"{error.args[0]} (Sheet {reader.sheet!r} of the workbook, which has sheets "
                              f"{', '.join(map(repr, reader.sheets))}: pick another with --sheet.)",)
            raise error
        for name in self.keep if self.keep is not None else []:
            if name not in names:
                raise missing_column(name, names)
        self._check_repeated(reader, names if self.keep is None else self.keep)

    def _state(self, meta: dict[str, str], reader: "_Reader") -> dict[str, Any]:
        """What makes this job this job: the input file (path, size, modification time, as they were before any
        of it was read), the options and what ``meta`` records (model, checkpoint hash...). The parts folder's
        manifest; OUTPUT records its digest."""
        stat = reader.stat
        return {"input": str(self.input.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "chunk_rows": self.chunk_rows, "keep": self.keep, "errors": self.options.errors,
                "sheet": self.sheet, "na_strings": self.na_strings, **meta}

    def _already_complete(self, meta: dict[str, str], state: dict[str, Any], start: float) -> FileResult:
        """``resume=True`` on an existing Parquet OUTPUT: done if this same job wrote it, refused otherwise."""
        import pyarrow.parquet as pq

        try:
            info = pq.read_metadata(self.output)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
            raise FileError(f"Output {str(self.output)!r} already exists and is not a readable Parquet file "
                            f"({type(e).__name__}), so --resume cannot tell whether it is this job's. Pass "
                            "--overwrite (overwrite=True) to replace it.") from None
        theirs = {k.decode()[len(META_PREFIX):]: v.decode() for k, v in (info.metadata or {}).items()
                  if k.decode().startswith(META_PREFIX)}
        if theirs.get("job_hash") != _job_hash(state):
            if not theirs:
                why = "it was not written by distilframe"
            elif "job_hash" not in theirs:
                why = "it records no job_hash (an earlier distilframe, or a DataFrame or Dask writer, wrote it)"
            else:
                recorded = {*meta, *theirs} - {"created_at", "job_hash"}
                changed = sorted(k for k in recorded if meta.get(k) != theirs.get(k))
                why = (f"another job wrote it (its {', '.join(changed)} {'differs' if len(changed) == 1 else 'differ'})"
                       if changed else "another job wrote it (the input file, or --keep, --chunk-rows, --errors, "
                       "--sheet or --na-strings differ)")
            raise FileError(f"Output {str(self.output)!r} already exists and is not this job's finished output: "
                            f"{why}. Pass --overwrite (overwrite=True) to replace it, or write to another OUTPUT.")
        # This job's parts left beside its output (a kill after the rename): finished work, removed.
        previous = fs.read_json(self.parts / "state.json") or {}
        previous.pop("job", None)
        if previous == state:
            shutil.rmtree(self.parts, ignore_errors=True)
        return FileResult(output=self.output, rows=info.num_rows, chunks=0, resumed_chunks=0,
                          seconds=time.perf_counter() - start, already_complete=True)

    def _prepare_parts(self, state: dict[str, Any]) -> dict[int, int]:
        """Chunks already done (resume): their rows by chunk index, after checking that the input and options
        have not changed and that each part is whole and this job's (a damaged part is named and redone)."""
        state_file = self.parts / "state.json"
        self.job = secrets.token_hex(8)  # written into every part: the finished file holds this job's parts only
        if self.parts.exists():
            previous = fs.read_json(state_file) or {}
            job = previous.pop("job", None)
            if self.resume and previous == state and isinstance(job, str):
                self.job = job
                return self._finished_parts()
            if self.resume:
                changed = sorted(k for k in set(state) | set(previous or {}) if (previous or {}).get(k) != state.get(k))
                raise FileError(
                    f"Cannot resume into {str(self.output)!r}: the input file or the options changed since the "
                    f"interrupted run ({', '.join(changed) or 'unreadable state'}). Run without --resume to start over."
                )
            print(f"distilframe: starting over; unfinished work of an earlier run was in {self.parts} "
                  "(pass --resume to continue such a run).", file=sys.stderr)
            shutil.rmtree(self.parts)
        self.parts.mkdir()
        fs.shareable(self.parts)
        fs.atomic_write(state_file, json.dumps({**state, "job": self.job}, indent=1, sort_keys=True))
        return {}

    def _finished_parts(self) -> dict[int, int]:
        import pyarrow.parquet as pq

        done = {}
        for path in sorted(self.parts.glob("part-*.parquet")):
            try:
                index = int(path.stem.removeprefix("part-"))
                info = pq.read_metadata(path)
                job = (info.metadata or {}).get(PART_JOB_KEY, b"").decode()
            except (OSError, ValueError) as e:
                _note(f"{path.name} of the interrupted run is damaged ({type(e).__name__}): computing it again.")
                path.unlink(missing_ok=True)
                continue
            if job != self.job:
                _note(f"{path.name} was not written by the interrupted run: computing it again.")
                path.unlink(missing_ok=True)
                continue
            done[index] = info.num_rows
        return done

    def _process(self, table, keep: list[str], loaded, row_offset: int):
        import pandas as pd
        import pyarrow as pa

        from ._pipeline import run

        if isinstance(table, pd.DataFrame):  # JSON Lines and spreadsheets: Python values, as the accessor has
            series = table[self.column].reset_index(drop=True)
        else:
            series = table.column(self.column).to_pandas()
        subject, first, unit = self.rows
        series.index = pd.RangeIndex(first + row_offset, first + row_offset + len(series))  # errors name them
        series.name = self.column
        if not isinstance(table, pd.DataFrame) and pa.types.is_binary(table.schema.field(self.column).type):
            series = _decoded(series, self.options.errors, subject, unit)
        values = texts(series, self.options.errors, subject=subject, unit=unit,
                       coerce="--errors coerce (errors='coerce')")
        outcome = run(self.task, values, loaded, self.options)
        if isinstance(table, pd.DataFrame):
            table = _arrow(table[keep], {self.column: values} if self.options.errors == "coerce" else {})
        elif self.column in keep and pa.types.is_binary(table.schema.field(self.column).type):
            table = _set_column(table, self.column, pa.array(series.to_numpy(dtype=object, na_value=None),
                                                             type=pa.string()))
        out = table.select(keep)
        for name, array in OutputSchema.for_model(self.task, self.column, self.options, loaded).to_arrow(
                outcome.result).items():
            out = _set_column(out, name, array)
        return out

    def _finish(self, meta: dict[str, str], n_chunks: int, rows: int, reader: "_Reader") -> None:
        import pyarrow.parquet as pq

        parts = [self._part(i) for i in range(n_chunks)]
        # Before OUTPUT is replaced: every part is this job's, and together they hold the input's rows.
        infos = [pq.read_metadata(p) for p in parts]
        if any((i.metadata or {}).get(PART_JOB_KEY) != self.job.encode() for i in infos) or \
                sum(i.num_rows for i in infos) != rows:
            raise FileError(f"The parts in {self.parts} are not all this job's (another process wrote there), "
                            f"so {str(self.output)!r} was not written. Run the command again.")
        meta = {**meta, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with fs.staged_file(self.output) as tmp:  # OUTPUT appears complete, with umask permissions
            import pyarrow as pa

            def differ(e: Exception) -> FileError:
                # Bad data found only now: the same command would fail again, so nothing is left (as in _run).
                shutil.rmtree(self.parts, ignore_errors=True)
                return FileError(f"The chunks of {self.input.name!r} do not share column types "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__}): convert the input to "
                                 "Parquet, keep fewer columns (--keep), or read it as one chunk (--chunk-rows above "
                                 "its number of rows).")

            # Chunks of a CSV, JSON Lines file or sheet may infer different types (int, then float): unify.
            try:
                schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in parts],
                                          promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                raise differ(e) from e
            schema = schema.with_metadata({f"{META_PREFIX}{k}": v for k, v in meta.items()})

            def read(part: Path):
                try:
                    return pq.read_table(part).cast(schema)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                    raise differ(e) from e

            suffix = self.output.suffix.lower()
            if suffix in (".parquet", ".pq"):
                with pq.ParquetWriter(tmp, schema) as writer:  # one part in memory at a time
                    for part in parts:
                        writer.write_table(read(part))
            elif suffix in (".csv", ".tsv"):
                import pyarrow.csv as pacsv

                options = pacsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ",")
                with pacsv.CSVWriter(tmp, schema.remove_metadata(), write_options=options) as writer:
                    for part in parts:
                        writer.write_table(read(part).replace_schema_metadata(None))
            elif reader.kind == "excel":  # the same workbook, with the new columns on its sheet
                reader.write_workbook(tmp, pa.concat_tables([pq.read_table(p, columns=self.outputs) for p in parts]),
                                      self.outputs)
            else:  # .xlsx from another format: a spreadsheet is small; it is written whole
                import pandas as pd

                frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
                with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                    frame.to_excel(writer, index=False)
        shutil.rmtree(self.parts, ignore_errors=True)


def _magic(path: Path) -> bytes | None:
    """The first 4 bytes of a file (b"PAR1" for Parquet); None if it cannot be read (said by the reader)."""
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError:
        return None


def _job_hash(state: dict[str, Any]) -> str:
    """A digest of a job's state (``_Job._state``): the first 32 hex digits of the SHA-256 of its JSON."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:32]


def _set_column(table, name: str, array):
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, array) if index >= 0 else table.append_column(name, array)


def _write_part(table, path: Path, job: str) -> None:
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata({**(table.schema.metadata or {}), PART_JOB_KEY: job.encode()})
    with fs.staged_file(path) as tmp:  # a part exists only once it is complete
        pq.write_table(table, tmp)


def _decoded(series, errors: str, subject: str, unit: str = "row"):
    """A column read as bytes (the text column of a CSV) as strings: invalid UTF-8 is an error naming its
    row (the index label) and byte, or is replaced by U+FFFD with ``errors="coerce"``, as the accessor does
    with bytes. ``subject`` names the column and the file, ``unit`` what its rows are ("row", "record")."""
    out = []
    for row, value in series.items():
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError as e:
            if errors != "coerce":
                raise FileError(f"{subject} is not valid UTF-8 in {unit} {row} (byte {e.start} of the cell: "
                                f"{value[e.start:e.start + 4]!r}). Pass --errors coerce "
                                "(errors='coerce') to replace invalid bytes with U+FFFD, or save the file as "
                                "UTF-8.") from None
            out.append(value.decode("utf-8", errors="replace"))
    import pandas as pd

    return pd.Series(out, index=series.index, name=series.name, dtype=object)


def _arrow(frame, replaced: dict[str, list]):
    """An Arrow table of a frame of Python values (JSON Lines, a spreadsheet): a column of mixed types (a
    number among texts, a merged cell) becomes strings, nulls kept; ``replaced`` columns are given as is."""
    import pyarrow as pa

    arrays = {}
    for name in frame.columns:
        values = replaced[name] if name in replaced else frame[name].to_numpy(dtype=object, na_value=None)
        try:
            arrays[name] = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if not arrays:  # no kept column: a table of no columns that still has the rows
        return pa.table({"_": pa.nulls(len(frame))}).drop_columns(["_"])
    return pa.table(arrays)


def _note(message: str) -> None:
    print(f"distilframe: {message}", file=sys.stderr)


def _progress_bar(progress: bool | None, total: int | None):
    from tqdm.auto import tqdm

    show = progress if progress is not None else _stderr_is_terminal()
    return tqdm(total=total, disable=not show, unit="row", dynamic_ncols=True, file=sys.stderr,
                desc="rows")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------- readers

class _Reader:
    """Record batches of a file, ``chunk_rows`` rows at a time (the last may be shorter)."""

    def __init__(self, path: Path, kind: str, sheet: str | None = None, na_strings: bool = False):
        self.path = path
        self.kind = kind
        self.sheet = sheet
        self.sheets: list[str] = []
        self.na_strings = na_strings
        self.stat = path.stat()  # before reading: a file changed after this is another job's input (_Job._state)
        self.names, self.total_rows = self._inspect()

    def rows(self, column: str) -> tuple[str, int, str]:
        """How errors name ``column`` and its rows, as a user finds them in the file: (subject, the number of
        the first data row, unit). A sheet's rows are numbered as the spreadsheet shows them (the header is
        row 1; every row is read, empty ones too). A CSV's and a JSON Lines file's records are counted from 1
        (a record is not a line: the readers skip blank lines, and a CSV cell may hold line breaks), a
        Parquet file's rows from 0, as pandas counts them."""
        if self.kind == "excel":
            return f"Column {column!r} of sheet {self.sheet!r} in {self.path.name!r}", 2, "row"
        if self.kind in ("csv", "tsv"):
            return (f"Column {column!r} of {self.path.name!r} (records counted from 1 below the header, blank "
                    "lines skipped)"), 1, "record"
        if self.kind == "jsonl":
            return f"Column {column!r} of {self.path.name!r} (records counted from 1, blank lines skipped)", 1, \
                "record"
        return f"Column {column!r} of {self.path.name!r} (rows counted from 0)", 0, "row"

    def _fail(self, e: Exception) -> FileError:
        return FileError(f"Could not read {self.path.name!r} as {self.kind.upper()}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}")

    def _inspect(self) -> tuple[list[str], int | None]:
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                f = pq.ParquetFile(self.path)
                return list(f.schema_arrow.names), f.metadata.num_rows
            if self.kind in ("csv", "tsv"):
                reader = self._csv([])
                return list(reader.schema.names), None
            if self.kind == "jsonl":
                import pandas as pd

                first = next(iter(pd.read_json(self.path, lines=True, chunksize=100)), None)
                return (list(first.columns) if first is not None else []), None
            frame = self._excel()
            return list(frame.columns), len(frame)
        except FileError:
            raise
        except ImportError:
            raise
        except Exception as e:
            raise self._fail(e) from e

    def _csv(self, include: list[str], text: str | None = None):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        # Only an empty cell is missing: "NA", "null", "N/A"... are text, unless na_strings asks for
        # pandas' reading (Arrow's list of null strings is pandas' list).
        nulls = pacsv.ConvertOptions().null_values if self.na_strings else [""]
        convert = pacsv.ConvertOptions(include_columns=include or None, strings_can_be_null=True, null_values=nulls)
        if text is not None:
            # The text column is text whatever it looks like (read as bytes: invalid UTF-8 is found per row,
            # by _decoded); the others are inferred from the first block.
            convert.column_types = {text: pa.binary()}
        parse = pacsv.ParseOptions(delimiter="\t" if self.kind == "tsv" else ",", newlines_in_values=True)
        return pacsv.open_csv(self.path, parse_options=parse, convert_options=convert,
                              read_options=pacsv.ReadOptions(block_size=1 << 22))

    def _excel(self):
        """The sheet as a frame of the cells' values (a formula's last computed value), one row per worksheet
        row below the header row, so that row i is worksheet row i + 2 (``write_workbook`` relies on it).
        Only an empty cell is missing; a text saying "NA" stays text, unless ``na_strings``."""
        import pandas as pd

        try:
            import openpyxl
        except ImportError as e:
            raise ImportError("Reading and writing .xlsx needs openpyxl: pip install 'distilframe[excel]'.") from e
        if getattr(self, "_frame", None) is not None:
            return self._frame
        workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        try:
            self.sheets = list(workbook.sheetnames)
            if self.sheet is None:
                self.sheet = self.sheets[0]
            elif self.sheet not in self.sheets:
                raise FileError(f"Got --sheet {self.sheet!r} but {self.path.name!r} has sheets "
                                f"{', '.join(map(repr, self.sheets))}.")
            worksheet = workbook[self.sheet]
            worksheet.reset_dimensions()  # a stored dimension may be stale: read every row there is
            rows = [list(r) for r in worksheet.iter_rows(values_only=True)]
        finally:
            workbook.close()
        header = rows[0] if rows else []
        while header and header[-1] is None:
            header = header[:-1]
        names = [str(h) if h is not None else f"Unnamed: {i}" for i, h in enumerate(header)]
        body = [(r + [None] * len(names))[:len(names)] for r in rows[1:]]
        while body and all(v is None for v in body[-1]):  # formatted but empty rows at the end
            body.pop()
        if self.na_strings:  # the texts pandas reads as missing (Arrow's list is pandas' list)
            import pyarrow.csv as pacsv

            nulls = set(pacsv.ConvertOptions().null_values)
            body = [[None if isinstance(v, str) and v in nulls else v for v in row] for row in body]
        self._frame = pd.DataFrame(body, columns=names, dtype=object)
        return self._frame

    def write_workbook(self, path: Path, table, new: list[str]) -> None:
        """A copy of the input workbook with the ``new`` columns of ``table`` on its sheet, right of the last
        column (a column of the same header is overwritten): sheets, formats, formulas, merged cells kept."""
        import openpyxl

        now = self.path.stat()
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (self.stat.st_size, self.stat.st_mtime_ns, self.stat.st_ino):
            raise FileError(f"{self.path.name!r} changed while the job ran: its results belong to the rows it had "
                            "before, and would not line up with the rows it has now. Run the command again.")
        workbook = openpyxl.load_workbook(self.path)  # formulas as formulas
        sheet = workbook[self.sheet]
        width = max(len(self._excel().columns), sheet.max_column)  # cells right of the last header are kept
        header = [c.value for c in sheet[1]] if sheet.max_row >= 1 else []
        for name in new:
            column = header.index(name) + 1 if name in header else width + 1
            width = max(width, column)
            sheet.cell(row=1, column=column, value=name)
            for row, value in enumerate(table.column(name).to_pylist(), start=2):
                sheet.cell(row=row, column=column, value=value)
        workbook.save(path)

    def chunks(self, chunk_rows: int, include: list[str], text: str) -> Iterator[Any]:
        import pyarrow as pa

        try:
            for batch in self._batches(chunk_rows, include, text):
                yield batch
        except (FileError, ImportError):
            raise
        except OSError:
            raise  # an I/O error, not bad data: the finished parts are kept for --resume
        except (pa.ArrowException, ValueError, OSError) as e:
            raise self._fail(e) from e

    def _batches(self, chunk_rows: int, include: list[str], text: str) -> Iterator[Any]:
        import pyarrow as pa

        if self.kind == "parquet":
            import pyarrow.parquet as pq

            f = pq.ParquetFile(self.path)
            yield from _rechunk((pa.Table.from_batches([b]) for b in f.iter_batches(batch_size=chunk_rows,
                                                                                    columns=include)), chunk_rows)
        elif self.kind in ("csv", "tsv"):
            reader = self._csv(include, text)
            yield from _rechunk((pa.Table.from_batches([b]) for b in reader), chunk_rows)
        elif self.kind == "jsonl":
            import pandas as pd

            for frame in pd.read_json(self.path, lines=True, chunksize=chunk_rows, dtype=False):
                yield frame[include]  # Python values: the row rules apply as in the accessor (_process)
        else:
            frame = self._excel()
            for start in range(0, len(frame), chunk_rows):
                yield frame.iloc[start:start + chunk_rows][include]

    def empty_table(self, include: list[str]):
        """No rows, with the file's column types where the format records them."""
        import pyarrow as pa

        if self.kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(self.path).schema_arrow
            return schema.empty_table().select(include)
        return pa.table({name: pa.array([], type=pa.string()) for name in include})


def _rechunk(tables: Iterator[Any], rows: int) -> Iterator[Any]:
    """Exactly ``rows`` rows per table (the last may be shorter), whatever sizes the reader yields."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, rows)
            rest = whole.slice(rows)
            pending, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.concat_tables(pending)

