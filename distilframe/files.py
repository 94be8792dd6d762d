"""Embed or classify a table file, for ETL jobs: streamed in, written atomically, resumable.

    INPUT ─► chunks of rows ─► executor ─► <OUTPUT>.distilframe-parts/part-NNNNNN.parquet
                                              (each part renamed into place when complete)
                       all parts done ─► <OUTPUT>.tmp-XXXX ─► rename ─► OUTPUT

* Input: Parquet (read as record batches, never whole), CSV/TSV and JSON Lines
  (streamed), Excel ``.xlsx`` (extra ``excel``).
* Output: embeddings to Parquet, as a fixed-size list of float32 with key-value
  metadata (model, checkpoint content hash, pooling, normalize, max_length, dim,
  distilframe version, created-at); classification to Parquet, CSV/TSV or ``.xlsx``.
* Atomic: OUTPUT only ever holds a complete file.
* Resumable: finished chunks stay in the parts folder; ``resume=True`` checks that
  the input file and the options are those of the interrupted run and continues
  from the first missing chunk. The result is identical row for row.

The same executor and row rules (``distilframe.columns``) as the pandas accessor.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import columns, executor
from .errors import DistilFrameError

__all__ = ["FileError", "FileResult", "classify_file", "embed_file", "read_metadata"]

DEFAULT_CHUNK_ROWS = 10_000
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".xlsx": "excel"}
WRITERS = {"embed": (".parquet", ".pq"), "classify": (".parquet", ".pq", ".csv", ".tsv", ".xlsx")}
PARTS_SUFFIX = ".distilframe-parts"
META_PREFIX = "distilframe."


class FileError(DistilFrameError, ValueError):
    """A file that cannot be read or written as asked: wrong extension, unreadable, already there."""


@dataclass(frozen=True)
class FileResult:
    """What a file job did."""

    output: Path
    rows: int
    chunks: int
    resumed_chunks: int
    seconds: float


def embed_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    column: str,
    model: str | os.PathLike | None = None,
    keep: Sequence[str] | None = None,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 512,
    long_text: str = "truncate",
    stride: int = 128,
    batch_size: int | None = None,
    errors: str = "raise",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision: str = "auto",
    num_threads: int | None = None,
    cache: bool = True,
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
    pooling, normalize, max_length, long_text, stride, batch_size, errors
        As in ``DataFrame.distil.embed``.
    resume
        Continue an interrupted run of the same command from its last finished chunk.
    overwrite
        Replace an existing OUTPUT (otherwise it is an error).
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
    options = dict(pooling=pooling, normalize=normalize, max_length=max_length, long_text=long_text, stride=stride)
    columns.check_options("embed", errors, {"normalize": normalize, "resume": resume, "overwrite": overwrite},
                          pooling=pooling, max_length=max_length, long_text=long_text, stride=stride,
                          batch_size=batch_size)
    return _Job("embed", input, output, column, model, keep, options, batch_size, errors, resume, overwrite,
                progress, chunk_rows, precision, num_threads, cache).run()


def classify_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    column: str,
    model: str | os.PathLike | None = None,
    keep: Sequence[str] | None = None,
    all_scores: bool = False,
    max_length: int = 512,
    long_text: str = "truncate",
    stride: int = 128,
    batch_size: int | None = None,
    errors: str = "raise",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision: str = "auto",
    num_threads: int | None = None,
    cache: bool = True,
) -> FileResult:
    """Classify the text column of a file: the same rows plus ``<column>_label`` and ``<column>_score``.

    OUTPUT may be ``.parquet``, ``.csv``, ``.tsv`` or ``.xlsx``: a spreadsheet in, the same
    spreadsheet with label and score columns out. Other options as in :func:`embed_file` and
    ``DataFrame.distil.classify``.

    Examples
    --------
    >>> classify_file("reviews.xlsx", "reviews-labelled.xlsx", column="review")  # doctest: +SKIP
    """
    options = dict(all_scores=all_scores, max_length=max_length, long_text=long_text, stride=stride)
    columns.check_options("classify", errors, {"all_scores": all_scores, "resume": resume, "overwrite": overwrite},
                          max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size)
    return _Job("classify", input, output, column, model, keep, options, batch_size, errors, resume, overwrite,
                progress, chunk_rows, precision, num_threads, cache).run()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The distilframe metadata and row count of a Parquet file written by :func:`embed_file`, or of a
    folder of Parquet parts written by ``ddf.distil.to_parquet`` (rows summed over the parts)."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise FileError(f"{path} is a folder without .parquet files.")
    try:
        metas = [pq.read_metadata(f) for f in files]
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise FileError(f"Could not read {path} as Parquet: {e}") from e
    meta = metas[0]
    kv = meta.metadata or {}
    out = {k.decode()[len(META_PREFIX):]: v.decode() for k, v in kv.items() if k.decode().startswith(META_PREFIX)}
    out["rows"] = sum(m.num_rows for m in metas)
    out["columns"] = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
    out["columns"] = list(dict.fromkeys(out["columns"]))
    return out


def result_metadata(task: str, column: Any, options: dict[str, Any], *, name: str, checkpoint_hash: str,
                    precision: str, max_positions: int, dim: int | None = None,
                    labels: Sequence[str] = ()) -> dict[str, str]:
    """The key-value metadata of a result file (without the ``distilframe.`` prefix): what made it.

    Shared by the file pipeline and the Dask writer, so both kinds of output describe themselves alike.
    """
    from . import __version__

    meta = {
        "task": task,
        "model": name,
        "checkpoint_sha256": checkpoint_hash,
        "column": column if isinstance(column, str) else json.dumps(column, default=str),
        "distilframe_version": __version__,
        "precision": precision,
        **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in options.items()},
    }
    meta["max_length"] = str(min(options["max_length"], max_positions))
    if task == "embed":
        meta["dim"] = str(dim)
    else:
        meta["labels"] = json.dumps(list(labels))
    return meta


# ----------------------------------------------------------------------------------------- the job

class _Job:
    def __init__(self, task, input, output, column, model, keep, options, batch_size, errors, resume, overwrite,
                 progress, chunk_rows, precision, num_threads, cache):
        if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
            raise ValueError(f"Got chunk_rows={chunk_rows!r} but expected a positive integer, such as 10000.")
        self.task = task
        self.input = Path(input).expanduser()
        self.output = Path(output).expanduser()
        self.column = column
        if model is None:
            from .defaults import default_model

            model = default_model(task)
        self.model = model
        self.keep = list(keep) if keep is not None else None
        self.options = options
        self.batch_size = batch_size
        self.errors = errors
        self.resume = resume
        self.overwrite = overwrite
        self.progress = progress
        self.chunk_rows = chunk_rows
        self.precision = precision
        self.num_threads = num_threads
        self.cache = cache
        self.parts = self.output.with_name(self.output.name + PARTS_SUFFIX)

    def run(self) -> FileResult:
        start = time.perf_counter()
        reader = self._check_paths()
        names = reader.names
        if self.column not in names:
            raise columns.missing_column(self.column, names)
        keep = names if self.keep is None else self.keep
        for name in keep:
            if name not in names:
                raise columns.missing_column(name, names)

        from .checkpoints import content_hash
        from .manager import load_for

        # Before anything is written: a failure leaves nothing.
        loaded = load_for(self.task, self.model, precision=self.precision, num_threads=self.num_threads)
        meta = self._metadata(loaded, content_hash(loaded.checkpoint))
        done = self._prepare_parts(meta)

        rows = 0
        n_chunks = 0
        bar = _progress_bar(self.progress, reader.total_rows)
        try:
            for index, table in enumerate(reader.chunks(self.chunk_rows, [*dict.fromkeys([*keep, self.column])])):
                n_chunks = index + 1
                if index < done:
                    rows += table.num_rows
                    bar.update(table.num_rows)
                    continue
                out = self._process(table, keep, loaded, row_offset=rows)
                _write_part(out, self.parts / f"part-{index:06d}.parquet")
                rows += table.num_rows
                bar.update(table.num_rows)
        finally:
            bar.close()
        if n_chunks == 0:  # an empty input still gives a complete, empty output
            empty = reader.empty_table([*dict.fromkeys([*keep, self.column])])
            _write_part(self._process(empty, keep, loaded, row_offset=0), self.parts / "part-000000.parquet")
            n_chunks = 1
        self._finish(meta, n_chunks)
        return FileResult(output=self.output, rows=rows, chunks=n_chunks, resumed_chunks=min(done, n_chunks),
                          seconds=time.perf_counter() - start)

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
        if self.output.exists() and not self.overwrite:
            raise FileError(f"Output {str(self.output)!r} already exists. Pass --overwrite (overwrite=True) "
                            "to replace it.")
        if not self.output.parent.is_dir():
            raise FileError(f"The output folder {str(self.output.parent)!r} does not exist.")
        return _Reader(self.input, kind)

    def _metadata(self, loaded, checkpoint_hash: str) -> dict[str, str]:
        return result_metadata(self.task, self.column, self.options, name=loaded.name, checkpoint_hash=checkpoint_hash,
                               precision=loaded.precision, max_positions=loaded.checkpoint.max_positions,
                               dim=loaded.dim, labels=loaded.labels)

    def _prepare_parts(self, meta: dict[str, str]) -> int:
        """Chunks already done (resume), after checking that the input and options have not changed."""
        stat = self.input.stat()
        state = {"input": str(self.input.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                 "chunk_rows": self.chunk_rows, "keep": self.keep, "errors": self.errors, **meta}
        state_file = self.parts / "state.json"
        if self.parts.exists():
            previous = _read_json(state_file)
            if self.resume and previous == state:
                done = 0
                while (self.parts / f"part-{done:06d}.parquet").is_file():
                    done += 1
                return done
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
        _write_json_atomic(state_file, state)
        return 0

    def _process(self, table, keep: list[str], loaded, row_offset: int):
        import pandas as pd
        import pyarrow as pa

        from .arrow import embedding_arrow

        series = table.column(self.column).to_pandas()
        series.index = pd.RangeIndex(row_offset, row_offset + len(series))  # errors name file row numbers
        series.name = self.column
        texts = columns.texts(series, self.errors)
        opts = {k: v for k, v in self.options.items() if k != "all_scores"}
        from .cache import default_cache

        result = executor.run(texts, loaded, task=self.task, batch_size=self.batch_size, progress=False,
                              cache=default_cache() if self.cache else None, **opts)
        out = table.select(keep)
        if self.task == "embed":
            return _set_column(out, columns.out_name(self.column, "embedding"), embedding_arrow(result.values, result.valid))
        for name, values in columns.classification(result, loaded.labels, self.column,
                                                   self.options["all_scores"]).items():
            array = pa.array(values, type=pa.string()) if values.dtype == object else pa.array(values, pa.float32())
            out = _set_column(out, name, array)
        return out

    def _finish(self, meta: dict[str, str], n_chunks: int) -> None:
        import pyarrow.parquet as pq

        parts = [self.parts / f"part-{i:06d}.parquet" for i in range(n_chunks)]
        meta = {**meta, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.output.name}.tmp-", dir=self.output.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            import pyarrow as pa

            # Chunks of a CSV or JSON Lines file may infer different types (int, then float): unify.
            schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in parts],
                                      promote_options="permissive")
            schema = schema.with_metadata({f"{META_PREFIX}{k}": v for k, v in meta.items()})

            def read(part: Path):
                try:
                    return pq.read_table(part).cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise FileError(f"The chunks of {self.input.name!r} do not share column types ({e}); "
                                    "convert the input to Parquet, or keep fewer columns.") from e

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
            else:  # .xlsx: a spreadsheet is small; it is written whole
                import pandas as pd

                frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
                with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                    frame.to_excel(writer, index=False)
            os.replace(tmp, self.output)
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)


def _set_column(table, name: str, array):
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, array) if index >= 0 else table.append_column(name, array)


def _write_part(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # a part exists only once it is complete


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


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

    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind
        self.names, self.total_rows = self._inspect()

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
            return list(map(str, frame.columns)), len(frame)
        except FileError:
            raise
        except ImportError:
            raise
        except Exception as e:
            raise self._fail(e) from e

    def _csv(self, include: list[str]):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(include_columns=include or None, strings_can_be_null=True)
        if include:
            # The text column is text whatever it looks like; the others are inferred from the first block.
            convert.column_types = {include[-1]: pa.string()}
        parse = pacsv.ParseOptions(delimiter="\t" if self.kind == "tsv" else ",", newlines_in_values=True)
        return pacsv.open_csv(self.path, parse_options=parse, convert_options=convert,
                              read_options=pacsv.ReadOptions(block_size=1 << 22))

    def _excel(self):
        import pandas as pd

        try:
            import openpyxl  # noqa: F401
        except ImportError as e:
            raise ImportError("Reading and writing .xlsx needs openpyxl: pip install 'distilframe[excel]'.") from e
        return pd.read_excel(self.path, engine="openpyxl")

    def chunks(self, chunk_rows: int, include: list[str]) -> Iterator[Any]:
        import pyarrow as pa

        try:
            for batch in self._batches(chunk_rows, include):
                yield batch
        except (FileError, ImportError):
            raise
        except (pa.ArrowException, ValueError, OSError) as e:
            raise self._fail(e) from e

    def _batches(self, chunk_rows: int, include: list[str]) -> Iterator[Any]:
        import pyarrow as pa

        if self.kind == "parquet":
            import pyarrow.parquet as pq

            f = pq.ParquetFile(self.path)
            yield from _rechunk((pa.Table.from_batches([b]) for b in f.iter_batches(batch_size=chunk_rows,
                                                                                    columns=include)), chunk_rows)
        elif self.kind in ("csv", "tsv"):
            reader = self._csv(include)
            yield from _rechunk((pa.Table.from_batches([b]) for b in reader), chunk_rows)
        elif self.kind == "jsonl":
            import pandas as pd

            for frame in pd.read_json(self.path, lines=True, chunksize=chunk_rows, dtype=False):
                yield pa.Table.from_pandas(frame[include], preserve_index=False)
        else:
            frame = self._excel()
            frame.columns = list(map(str, frame.columns))
            for start in range(0, len(frame), chunk_rows):
                yield pa.Table.from_pandas(frame.iloc[start:start + chunk_rows][include], preserve_index=False)

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

