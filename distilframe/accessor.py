"""The ``.distil`` accessor on pandas DataFrames and Series.

Thin and stateless: pick the column, build the options, call the pipeline, and add
its columns with the original index (whatever its shape: default, non-unique, MultiIndex).

The row rules (missing values, non-strings, invalid Unicode) are those of ``_text``, and the output
columns those of ``_frame``, shared with every other entry point. A text longer than ``max_length``
tokens is truncated, with one warning per call, unless ``long_text="chunk"``. An output column replaces
a column of that name in the returned frame; the input frame is never modified.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ._batches import DEFAULT_BATCH_SIZE, DEFAULT_TOKEN_BUDGET, INT8_PACK_WIDTH, INT8_TOKEN_BUDGET, PACK_WIDTH
from ._frame import with_columns
from ._options import DEFAULTS, RunOptions
from ._text import select_column, string_columns

__all__ = ["DistilDataFrameAccessor", "DistilSeriesAccessor"]


def _write_parquet(df: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool, write_index: bool | None) -> Path:
    from datetime import datetime, timezone

    import pyarrow.parquet as pq

    from . import _fs as fs
    from ._frame import output_target, parquet_table, step_to_write

    step = step_to_write(df.attrs, list(df.columns))
    _refuse_changed(df, step)
    target, write_index = output_target(path, overwrite, df.index, write_index)
    meta = {**step["metadata"], "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with fs.staged_file(target) as tmp:
        pq.write_table(parquet_table(df, meta, write_index), tmp)
    return target


def _refuse_changed(df: pd.DataFrame, step: dict[str, Any]) -> None:
    """An embedding column whose rows are no longer what embed made of their texts is not written as such."""
    from ._frame import out_name
    from ._similarity import changed_rows

    column = step["column"]
    if step["task"] != "embed" or column not in df.columns:
        return
    vectors = df[out_name(column, "embedding")]
    changed = changed_rows(df, vectors, df[column])  # the vectors are read only where the record keeps pairs
    if changed:
        raise ValueError(f"{changed:,} {'row' if changed == 1 else 'rows'} of {vectors.name!r} "
                         f"{'is not the embedding' if changed == 1 else 'are not the embeddings'} that embed made of "
                         f"their {column!r} (a text or a vector was changed since), and the file would say they are. "
                         f"Embed the column again (df.distil.embed({column!r}, ...)), then write it.")


def _added(task: str, series: pd.Series, arguments: dict[str, Any]) -> pd.DataFrame:
    """The output columns of ``task`` on ``series``, from a method's arguments (its ``locals()``)."""
    from ._similarity import added_columns

    return added_columns(task, series, arguments["model"], RunOptions.pick(arguments), labels=arguments.get("labels"),
                         template=arguments.get("template"))


def _search(frame: pd.DataFrame, texts: pd.Series, arguments: dict[str, Any]) -> pd.DataFrame:
    from ._similarity import check_k, check_queries, search

    queries, k = check_queries(arguments["query"]), check_k(arguments["k"])
    return search(frame, _embedded(frame, texts, arguments), queries, k)


def _vector_texts(frame: pd.DataFrame, column: Any, embeddings: Any, example: str) -> pd.Series:
    """The text column of search and duplicates: as named; without a name, the only text column, or (unless
    ``embeddings`` names the vectors) the one whose ``<column>_embedding`` the frame holds."""
    if column is None and embeddings is None:
        from ._similarity import embedded_column

        column = embedded_column(list(frame.columns), string_columns(frame))
    return select_column(frame, column, example)


def _embedded(frame: pd.DataFrame | None, texts: pd.Series, arguments: dict[str, Any]):
    from ._similarity import frame_embeddings

    return frame_embeddings(frame, texts, arguments["model"], RunOptions.pick(arguments), arguments["embeddings"])


def _duplicates(frame: pd.DataFrame | None, texts: pd.Series, arguments: dict[str, Any]) -> pd.DataFrame:
    from ._similarity import check_threshold, duplicates

    threshold = check_threshold(arguments["threshold"])
    return duplicates(texts, _embedded(frame, texts, arguments), threshold)


_OPTIONS_DOC = f"""
        model
            A registered name or alias (``distilframe.models()``), ``hf:<owner>/<repo>`` for a
            DistilBERT on the Hugging Face hub, or a local checkpoint folder (PaddleNLP or
            Hugging Face format). None: the session's default for the task
            (``distilframe.set_default_model``; at first distilbert-base-uncased for embed and
            the SST-2 sentiment model for classify).
        max_length
            Tokens per model input, [CLS] and [SEP] included (capped at the model's positions). None
            (default): the model's own (a sentence-transformers model's max_seq_length), else 512.
        long_text
            ``"truncate"`` (default): a longer text keeps its beginning, and one warning counts
            them. ``"chunk"``: it is cut into windows of ``max_length`` tokens overlapping by
            ``stride`` tokens, every window is run, and the row combines them (token-weighted
            mean of the windows' embeddings; mean of their class probabilities).
        stride
            Overlap of consecutive windows, in tokens, with ``long_text="chunk"`` (capped at
            half a window).
        batch_size
            Model rows per batch at most (default {DEFAULT_BATCH_SIZE}; batches also stay under
            {DEFAULT_TOKEN_BUDGET} tokens, {INT8_TOKEN_BUDGET} in int8). When embedding (and classifying
            in int8), short texts share rows of {PACK_WIDTH} tokens ({INT8_PACK_WIDTH} in int8), each attending
            only to itself.
        errors
            Non-string values: ``"raise"`` TypeError naming them, or ``"coerce"`` (bytes decoded
            as UTF-8, others with ``str()``).
        progress
            Show a progress bar; None shows one for large inputs in a terminal or a notebook.
        return_status
            Also add ``<column>_n_tokens`` (tokens before truncation, [CLS] and [SEP] included;
            null for missing values) and ``<column>_status`` (ok, null, empty, truncated, chunked).
        precision
            ``"auto"`` (bf16 where it is faster than fp32: AMX, or AVX512-BF16 on AMD; else fp32;
            ``DISTILFRAME_PRECISION`` can set it), ``"fp32"`` (exact), ``"bf16"`` (1.75x fp32 on
            AMD's AVX512-BF16, about 4.7x with AMX; cosine to fp32 about 0.9999; refused, with the
            CPU's missing flags, on a CPU without native bf16, where it would be emulated and many
            times slower; on Intel's AVX512-BF16 without AMX it runs at 0.77x fp32, with a
            ``PrecisionWarning``), or ``"int8"`` (ONNX Runtime, extra
            ``int8``: faster on CPUs without bf16; opt-in, as its error is larger: per-row cosine
            to fp32 at least 0.99 on every benchmark sentence with the trained all-MiniLM-L6-v2; a
            classification whose top two scores int8 puts within 1 of each other in logits (or, for
            a sigmoid head, a score within 1 logit of 0.5) is made again in fp32,
            ``DISTILFRAME_INT8_RECHECK`` sets that margin; zero-shot labels, which come from
            embeddings, are never made again).
        num_threads
            CPU threads for the model (default: every core available to the process).
        cache
            Reuse results computed before for the same text, model and settings, and store new ones
            (``<DISTILFRAME_HOME>/results.sqlite``, capped by ``DISTILFRAME_CACHE_SIZE``).
"""


@pd.api.extensions.register_dataframe_accessor("distil")
class DistilDataFrameAccessor:
    """DistilBERT on a DataFrame: ``df.distil.embed("text")``, ``df.distil.classify("review")``."""

    def __init__(self, obj: pd.DataFrame) -> None:
        self._obj = obj

    def embed(
        self,
        column: Any = None,
        *,
        model: str | os.PathLike | None = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        prompt_name: str | None = DEFAULTS.prompt_name,
        batch_size: int | None = DEFAULTS.batch_size,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        long_text: str = DEFAULTS.long_text,
        stride: int = DEFAULTS.stride,
        return_status: bool = DEFAULTS.return_status,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """Embed a text column; return a new frame with ``<column>_embedding`` added.

        Parameters
        ----------
        column
            The text column; may be omitted when the frame has exactly one string column.
        pooling
            ``"mean"`` (average of the token states), ``"cls"`` (the [CLS] state), ``"max"``,
            ``"mean_sqrt_len_tokens"``, ``"weightedmean"`` or ``"lasttoken"`` (as sentence-transformers
            computes them). None (default): the model's own: a sentence-transformers model's Pooling
            module, else mean.
        normalize
            Scale each vector to unit length, so that a dot product is a cosine similarity. None
            (default): the model's own: a sentence-transformers model's Normalize module, else True.
        prompt, prompt_name
            Text put before every text, as sentence-transformers' ``encode(prompt=...)`` does, or the
            name of one of the model's prompts (``config_sentence_transformers.json``). None: the
            model's default prompt, if it names one.
        {options}
        Returns
        -------
        DataFrame
            Every original column, same index, plus ``<column>_embedding``: fixed-size lists of
            float32 (``pd.ArrowDtype``), null where the text is missing, empty, blank, or has no
            token. Read a Parquet file of it back with ``pd.read_parquet(path, dtype_backend="pyarrow")``.

        Examples
        --------
        >>> df = pd.DataFrame({{"text": ["a happy cat", None]}})
        >>> out = df.distil.embed("text")  # doctest: +SKIP
        >>> distilframe.to_numpy(out["text_embedding"]).shape  # doctest: +SKIP
        (2, 768)
        """
        return with_columns(self._obj, _added("embed", select_column(self._obj, column), locals()))

    def classify(
        self,
        column: Any = None,
        *,
        model: str | os.PathLike | None = None,
        labels: list[str] | None = None,
        template: str | None = None,
        max_length: int | None = DEFAULTS.max_length,
        all_scores: bool = DEFAULTS.all_scores,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        batch_size: int | None = DEFAULTS.batch_size,
        long_text: str = DEFAULTS.long_text,
        stride: int = DEFAULTS.stride,
        return_status: bool = DEFAULTS.return_status,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """Classify a text column; return a new frame with ``<column>_label`` and ``<column>_score`` added.

        The model must have a trained sequence-classification head; base models are refused.
        The default is ``distilbert-base-uncased-finetuned-sst-2-english`` (English sentiment:
        NEGATIVE / POSITIVE). With ``labels=``, the labels are your own (zero-shot): see below.

        Parameters
        ----------
        column
            The text column; may be omitted when the frame has exactly one string column.
        labels, template
            Zero-shot labels: each row gets the label whose text (``template.format(label)``, default
            the label itself) is most similar to it, with a sentence model (``model=None``: the session
            default for search, all-MiniLM-L6-v2). The score is softmax(cosine / 0.05) over the labels:
            near 1 for a clear winner, near 1/len(labels) for a tie; it is a similarity, not a
            calibrated probability. Measured on examples/topics.csv (300 texts, 5 topics) with the trained
            all-MiniLM-L6-v2: see the README, Search.
        all_scores
            Also add one probability column per label, ``<column>_score_<LABEL>``.
        {options}
        Returns
        -------
        DataFrame
            Every original column, same index, plus ``<column>_label`` (string, the most probable
            label) and ``<column>_score`` (float32, its probability: softmax over the labels, or a
            sigmoid for multi-label models); null where the text is missing, empty or blank.

        Examples
        --------
        >>> df = pd.DataFrame({{"review": ["great!", "awful."]}})
        >>> df.distil.classify("review")  # doctest: +SKIP
        """
        texts = select_column(self._obj, column, "df.distil.classify('text')")
        return with_columns(self._obj, _added("classify", texts, locals()))

    def search(
        self,
        query: str | list[str],
        column: Any = None,
        *,
        k: int = 10,
        model: str | os.PathLike | None = None,
        embeddings: Any = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """The ``k`` rows nearest to a query (or to each of a list of queries) by cosine similarity.

        Exact: every row is scored, in blocks of 65,536 rows (memory beyond the embeddings: about 75 MB
        for 100 queries at once, 1 MB for one). The column's embeddings come from, in this order:
        ``embeddings=`` (a column name or a Series of vectors); an existing ``<column>_embedding`` column
        whose recorded model and settings match (as ``embed`` leaves it); else the pipeline (the result
        cache, so a second search over the same column runs the model only on the query). Missing and
        empty texts never match.

        Parameters
        ----------
        query
            A string, or a list of strings.
        column
            The text column; may be omitted when the frame has exactly one string column, or one whose
            ``<column>_embedding`` it holds (as :meth:`embed` leaves it).
        k
            Rows per query (fewer when fewer rows have text).
        model
            As for :meth:`embed`; None: the model that made the existing embedding column, else the
            session default for search (all-MiniLM-L6-v2: a sentence model trained for similarity).
        embeddings
            The column of embeddings to search, made by ``model`` with these settings.
        pooling, normalize, max_length, prompt, errors, progress, precision, num_threads, cache
            As for :meth:`embed`.

        Returns
        -------
        DataFrame
            The rows found, with their index and every column, plus ``score`` (float32 cosine), best first;
            with several queries, also ``query``, in the order of the queries. Where the frame already has
            a column of that name, these are ``search_score`` and ``search_query``.

        Examples
        --------
        >>> df.distil.search("a refund for a broken item", "review", k=5)  # doctest: +SKIP
        """
        texts = _vector_texts(self._obj, column, embeddings, "df.distil.search('a query', 'text')")
        return _search(self._obj, texts, locals())

    def search_index(
        self,
        column: Any = None,
        *,
        approximate: bool = False,
        model: str | os.PathLike | None = None,
        embeddings: Any = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> Any:
        """The column's embeddings held for many searches: ``index.search(query, k=10)``, as :meth:`search`.

        approximate
            Build an inverted file (faiss; ``pip install "distilframe[ann]"``) once: the rows are
            clustered, and each query scores only the rows of the nearest eighth of the clusters (at least 4,
            and more where they hold fewer than ``k`` rows) instead of every row: for tables of millions of
            rows. Scores stay exact
            cosines; a few true neighbours may be missed (recall@10 in the README, Search).

        Other arguments as for :meth:`search`.

        Examples
        --------
        >>> index = df.distil.search_index("review", approximate=True)  # doctest: +SKIP
        >>> index.search("late delivery", k=5)  # doctest: +SKIP
        """
        from ._similarity import SearchIndex

        texts = _vector_texts(self._obj, column, embeddings, "df.distil.search_index('text')")
        return SearchIndex(self._obj, _embedded(self._obj, texts, locals()), approximate=approximate)

    def duplicates(
        self,
        column: Any = None,
        *,
        threshold: float = 0.95,
        model: str | os.PathLike | None = None,
        embeddings: Any = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """Near-duplicate groups: a new frame with ``<column>_dup_group`` and ``<column>_dup_score`` added.

        Groups are formed in row order: a row joins the first earlier group whose first row has a cosine of
        at least ``threshold`` with it, else it starts a group. So every member is within ``threshold`` of
        its group's first row. Rows of the same text are always one group. Exact (every pair of distinct
        texts is compared, in blocks of 2,048 rows: O(n^2) arithmetic, bounded memory). Embeddings and
        ``model`` as for :meth:`search`.

        Returns
        -------
        DataFrame
            Every original column, same index, plus ``<column>_dup_group`` (Int64: one number per group, in
            order of the groups' first rows; null for a row in no group) and ``<column>_dup_score``
            (float32: cosine to the group's first row, 1.0 for it; NaN for a row in no group).

        Examples
        --------
        >>> df.distil.duplicates("question", threshold=0.9)  # doctest: +SKIP
        """
        texts = _vector_texts(self._obj, column, embeddings, "df.distil.duplicates('text')")
        return with_columns(self._obj, _duplicates(self._obj, texts, locals()))

    def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False,
                   write_index: bool | None = None) -> Path:
        """Write a result of :meth:`embed` or :meth:`classify` to one Parquet file that describes itself.

        The file carries the file pipeline's ``distilframe.*`` metadata (model, checkpoint hash, options,
        dim or labels, precision; ``distilframe.files.read_metadata`` and ``distilframe info`` read it) and
        no pandas metadata, so plain ``pd.read_parquet(path)`` reads it back (``DataFrame.to_parquet`` of
        an embedding column writes pandas metadata that ``pd.read_parquet`` cannot read: pandas#59738).
        Add ``dtype_backend="pyarrow"`` to get the fixed-size list dtype rather than numpy arrays; either
        way :func:`distilframe.to_numpy` reads the column.

        The file appears complete or not at all, with the permissions your umask gives.

        write_index
            Write the index as columns, named as ``reset_index`` names them (``index`` when unnamed); by
            default when it is named or its labels are not integers (an unnamed integer index, a range
            or what filtering left of one, is row numbers): by dtype, so every chunk writes the same.

        Examples
        --------
        >>> df.distil.embed("text").distil.to_parquet("embeddings.parquet")  # doctest: +SKIP
        """
        return _write_parquet(self._obj, path, overwrite=overwrite, write_index=write_index)

    def panel(self, *, slice_rows: int | None = None) -> Any:
        """Open the notebook run panel on this frame (extra ``widgets``: ipywidgets).

        Pick a text column, the task, the model and options; Run works on a background thread with a
        progress bar (rows/s, ETA) and a Stop button; the output frame is then ``panel.result``.
        See :class:`distilframe.widgets.RunPanel`.

        Examples
        --------
        >>> panel = df.distil.panel()  # doctest: +SKIP
        >>> panel  # in a notebook cell: shows it  # doctest: +SKIP
        >>> panel.result  # after Run  # doctest: +SKIP
        """
        try:
            from .widgets import RunPanel
        except ImportError as e:
            if e.name != "ipywidgets":
                raise
            raise ImportError('df.distil.panel() needs ipywidgets: pip install "distilframe[widgets]"') from e
        return RunPanel(self._obj, **({} if slice_rows is None else {"slice_rows": slice_rows}))

    embed.__doc__ = embed.__doc__.format(options=_OPTIONS_DOC.strip("\n").lstrip())
    classify.__doc__ = classify.__doc__.format(options=_OPTIONS_DOC.strip("\n").lstrip())


@pd.api.extensions.register_series_accessor("distil")
class DistilSeriesAccessor:
    """DistilBERT on a Series of texts: ``s.distil.embed()``, ``s.distil.classify()``."""

    def __init__(self, obj: pd.Series) -> None:
        self._obj = obj

    def embed(
        self,
        *,
        model: str | os.PathLike | None = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        prompt_name: str | None = DEFAULTS.prompt_name,
        batch_size: int | None = DEFAULTS.batch_size,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        long_text: str = DEFAULTS.long_text,
        stride: int = DEFAULTS.stride,
        return_status: bool = DEFAULTS.return_status,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.Series | pd.DataFrame:
        """Embed the texts; return a Series named ``<name>_embedding`` with the same index.

        With ``return_status=True``, a DataFrame of that column, ``<name>_n_tokens`` and
        ``<name>_status``. Options and row rules as :meth:`DistilDataFrameAccessor.embed`.

        Examples
        --------
        >>> pd.Series(["a cat", "a dog"], name="text").distil.embed().name  # doctest: +SKIP
        'text_embedding'
        """
        added = _added("embed", self._obj, locals())
        if return_status:
            return added
        column = added.iloc[:, 0]
        column.attrs = dict(added.attrs)
        return column

    def classify(
        self,
        *,
        model: str | os.PathLike | None = None,
        labels: list[str] | None = None,
        template: str | None = None,
        max_length: int | None = DEFAULTS.max_length,
        all_scores: bool = DEFAULTS.all_scores,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        batch_size: int | None = DEFAULTS.batch_size,
        long_text: str = DEFAULTS.long_text,
        stride: int = DEFAULTS.stride,
        return_status: bool = DEFAULTS.return_status,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """Classify the texts; return a DataFrame of ``<name>_label`` and ``<name>_score`` with the same index.

        Options, zero-shot ``labels`` and row rules as :meth:`DistilDataFrameAccessor.classify`.
        """
        return _added("classify", self._obj, locals())

    def search(
        self,
        query: str | list[str],
        *,
        k: int = 10,
        model: str | os.PathLike | None = None,
        embeddings: Any = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """The ``k`` texts nearest to the query: a frame of the Series (same index) and ``score``.

        ``embeddings`` is a Series of vectors with the same index. As :meth:`DistilDataFrameAccessor.search`.
        """
        if embeddings is not None and not isinstance(embeddings, pd.Series):
            from ._similarity import not_a_series

            raise not_a_series(embeddings)
        frame = self._obj.to_frame(name=self._obj.name if self._obj.name is not None else "text")
        frame.attrs = dict(self._obj.attrs)
        return _search(frame, frame.iloc[:, 0], locals())

    def duplicates(
        self,
        *,
        threshold: float = 0.95,
        model: str | os.PathLike | None = None,
        embeddings: Any = None,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> pd.DataFrame:
        """Near-duplicate groups of the texts: ``<name>_dup_group`` and ``<name>_dup_score`` with the same
        index. As :meth:`DistilDataFrameAccessor.duplicates`."""
        return _duplicates(None, self._obj, locals())

    def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False,
                   write_index: bool | None = None) -> Path:
        """Write a result of :meth:`embed` as one Parquet file (see the DataFrame accessor's ``to_parquet``)."""
        frame = self._obj.to_frame()
        frame.attrs = dict(self._obj.attrs)
        return _write_parquet(frame, path, overwrite=overwrite, write_index=write_index)
