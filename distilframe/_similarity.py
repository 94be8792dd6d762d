"""Search, near-duplicates and zero-shot labels on a text column: the pipeline's embeddings, then ``_search``.

    column of texts ─► embeddings (an existing ``<column>_embedding`` of the same model and settings, the
                       ``embeddings=`` given, or the pipeline: result cache, then the model)
                    ─► _search (exact, blocked) ─► frames with the original index

Front ends (the pandas and Dask accessors, the notebook panel) call these with the column and one
:class:`~distilframe._options.RunOptions`; nothing here knows about them.

The model is, in this order: ``model=``; the model recorded in the existing embedding column's metadata;
the session default for search (``default_model("search")``: all-MiniLM-L6-v2, a sentence model trained
for similarity; distilbert-base-uncased's mean-pooled vectors are not, and rank poorly).
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import _search
from . import _text
from ._defaults import default_model
from ._frame import SHAPING, STEPS_KEY, OutputSchema, file_metadata, out_name, shaping, to_numpy
from ._manager import LoadedModel
from ._options import RunOptions
from ._pairs import RowPairs
from ._pipeline import load, pandas_result, run
from ._run import Result
from .errors import DistilFrameWarning, warn

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_TEMPLATE", "TEMPERATURE", "Embedded", "SearchIndex", "added_columns", "changed_rows", "check_k",
           "check_label_prompts", "check_labels", "check_queries", "check_threshold", "column_embeddings",
           "duplicates", "frame_embeddings", "not_a_series", "query_vectors", "recorded_step", "result_names",
           "results_frame", "search", "top_rows", "warn_unrecorded", "zero_shot", "zero_shot_metadata"]

DEFAULT_TEMPLATE = "{}"
# Zero-shot scores are softmax(cosine / TEMPERATURE) over the labels. 0.05 keeps a clear winner near 1 and a
# tie near 1/len(labels) (benchmarks/search.py prints the accuracy on examples/topics.csv).
TEMPERATURE = 0.05


@dataclass(frozen=True)
class Embedded:
    """A column's unit embeddings, which rows may match, and the model that made them (for the queries)."""

    matrix: np.ndarray
    valid: np.ndarray
    model: LoadedModel
    options: RunOptions


def _listed(value: Any) -> list | None:
    """A list, a tuple, or a 1-D array-like (a numpy array, a pandas Series or Index, such as
    ``df["topic"].unique()``, a Polars Series) as a list; None for anything else."""
    library = type(value).__module__.split(".")[0]
    one_d = (library in ("numpy", "pandas") and getattr(value, "ndim", None) == 1
             or library == "polars" and type(value).__name__ == "Series")
    if not isinstance(value, (list, tuple)) and not one_d:
        return None
    return [str(v) if isinstance(v, str) else v for v in value]  # numpy's str_ as str


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr when short, else its type and length."""
    text = repr(value)
    if len(text) <= 80 and "\n" not in text:
        return text
    try:
        return f"a {type(value).__name__} of {len(value)} items"
    except TypeError:  # no length (a 0-d array has __len__ but raises)
        return f"a {type(value).__name__}"


def _check_unicode(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"Got the {what} {value!r}, which is not valid Unicode (a lone surrogate at position "
                         f"{e.start}, as text decoded with errors='surrogateescape' has): decode it correctly, or "
                         "replace the surrogates with U+FFFD: .encode('utf-16', 'surrogatepass').decode('utf-16', "
                         "'replace').") from None


def check_queries(query: Any) -> list[str]:
    queries = [query] if isinstance(query, str) else _listed(query)
    if not queries:
        raise ValueError(f"Got query={_shown(query)} but expected a string or a non-empty list of strings.")
    for q in queries:
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"Got the query {q!r} but expected a non-empty string: an empty query matches nothing.")
        _check_unicode(q, "query")
    return queries


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Got k={k!r} but expected a positive integer, such as 10.")
    return int(k)


def check_threshold(threshold: Any) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not 0 < threshold <= 1:
        raise ValueError(f"Got threshold={threshold!r} but expected a cosine in (0, 1], such as 0.95.")
    return float(threshold)


def _embed_step(frame: "pd.DataFrame | pd.Series", name: Any) -> dict[str, Any] | None:
    """The last embed step ``frame`` records whose outputs hold the column ``name``, or None."""
    for step in reversed(frame.attrs.get(STEPS_KEY, [])):
        if step.get("task") == "embed" and name in [tuple(c) if isinstance(c, list) else c for c in step["outputs"]]:
            return step
    return None


def _step_metadata(frame: "pd.DataFrame | pd.Series", name: Any) -> dict[str, str] | None:
    step = _embed_step(frame, name)
    if step is None or "metadata" in step:
        return None if step is None else step["metadata"]
    # a Dask step records its model and options: what the metadata is made of
    options = step["options"]
    return file_metadata("embed", step["column"], options, load("embed", step["model"], options))


def recorded_step(frame: "pd.DataFrame", name: Any) -> bool:
    """Whether ``frame`` records the embed step that made its column ``name`` (without loading its model)."""
    return _embed_step(frame, name) is not None


def _recorded_options(meta: dict[str, str], options: RunOptions) -> RunOptions:
    """``options`` with the recorded embedding settings where none were given."""
    given = {}
    for key in ("pooling", "normalize", "max_length", "prompt"):
        if key in meta and getattr(options, key) is None:
            value = meta[key]
            given[key] = value if key in ("pooling", "prompt") else json.loads(value)
    return options.replace(**given) if given else options


def column_embeddings(texts: "pd.Series", model: str | os.PathLike | None, options: RunOptions, *,
                      existing: "pd.Series | None" = None, given: bool = False,
                      frame: "pd.DataFrame | None" = None, fallback: str | os.PathLike | None = None,
                      quiet: bool = False) -> Embedded:
    """The unit embeddings of ``texts``.

    ``existing`` is an embedding column (``given``: passed as ``embeddings=``, else found as
    ``<column>_embedding``); its metadata comes from ``frame``'s (or its own) recorded steps. ``fallback``:
    the model when neither ``model`` nor a record names one (default: ``default_model("search")``). ``quiet``:
    a found column with no record is not warned about (:func:`warn_unrecorded`; a Dask partition's, said on the
    client).
    """
    fallback = default_model("search") if fallback is None else fallback
    meta = None
    source = frame if frame is not None else existing  # the record of what made the column
    if existing is not None:
        meta = _step_metadata(source, existing.name)
        if meta is None and existing.attrs:
            source = existing  # a column of another result, given as embeddings=: its own record
            meta = _step_metadata(source, existing.name)
    if existing is not None and meta is not None:
        loaded = load("embed", meta["model"] if model is None else model, options)
        # The recorded max_length is the column's, not the caller's: only an explicit one is said to be too long.
        filled = loaded.fill(_recorded_options(meta, options), warn_past_positions=options.max_length is not None)
        wanted = file_metadata("embed", texts.name, filled, loaded)
        if shaping(wanted) == shaping(meta):
            matrix = to_numpy(existing)
            changed = changed_rows(source, existing, texts, matrix)
            if not changed:
                return _from_column(existing, loaded, filled, texts, matrix)
            warn(f"{changed:,} {'row' if changed == 1 else 'rows'} of {existing.name!r} "
                 f"{'is not the embedding' if changed == 1 else 'are not the embeddings'} that embed made of their "
                 f"{texts.name!r} (a text or a vector was changed since: a new column assigned, a cell edited), so "
                 f"the column is not used: the embeddings are computed again with {loaded.name!r} (with the result "
                 "cache on, texts embedded before are not). Embed the column again to store them.", DistilFrameWarning)
            return _pipeline_embeddings(texts, meta["model"] if model is None else model,
                                        _recorded_options(meta, options))[0]
        if given:
            differs = [k for k in SHAPING if wanted.get(k, "") != meta.get(k, "")]
            raise ValueError(f"The embeddings column {existing.name!r} was made by {meta['model']!r} with other "
                             f"settings ({', '.join(differs)} differ) than {loaded.name!r} as asked: pass "
                             f"model={meta['model']!r}, or drop embeddings= to compute them with {loaded.name!r}.")
    elif existing is not None and given:  # no record of what made it: trust the caller, check the dimension
        loaded = load("embed", fallback if model is None else model, options)
        filled = loaded.fill(options)
        return _from_column(existing, loaded, filled, texts)
    elif existing is not None and not quiet:  # found by its name, nothing says which model made it: computed again
        warn_unrecorded(existing.name, fallback if model is None else model)
    if model is None:
        model = meta["model"] if meta is not None else fallback
    return _pipeline_embeddings(texts, model, options)[0]


def warn_unrecorded(column: Any, model: Any) -> None:
    """Say that ``column``, an embedding column found by its name, is not used: nothing says which model made it."""
    warn(f"The frame has a column {column!r} but no record of the model that made it (a merge, join or concat "
         "of different results, filtering a Polars frame, collecting a LazyFrame or reading a file drops the "
         f"record), so it is not used: the embeddings are computed again with {str(model)!r}. To reuse the "
         f"column, pass embeddings={column!r} and model= the model that made it.", DistilFrameWarning)


def _pipeline_embeddings(texts: "pd.Series", model: str | os.PathLike,
                         options: RunOptions) -> tuple[Embedded, Result]:
    """The texts' unit embeddings from the pipeline (result cache, then the model), and the run's result."""
    loaded = load("embed", model, options)
    filled = loaded.fill(options)
    result = run("embed", _text.texts(texts, options.errors), loaded, filled).result
    return Embedded(_search.unit(result.values, result.valid, copy=False), result.valid, loaded, filled), result


def _has_text(texts: "pd.Series") -> np.ndarray:
    """Rows whose text is present and not blank: only these may match, whatever their vectors."""
    return np.array([isinstance(t, str) and bool(t.strip()) for t in _text.texts(texts, "coerce")], dtype=bool)


def changed_rows(source: "pd.DataFrame | pd.Series", column: "pd.Series", texts: "pd.Series",
                 matrix: np.ndarray | None = None) -> int:
    """How many rows of the embedding ``column`` (as ``matrix``, read from it if not given) are not what the
    recorded embed step of ``source`` made of ``texts`` (:class:`RowPairs`); 0 when the step keeps no pairs (a
    Dask step, a record read from a file) or embedded other texts."""
    step = _embed_step(source, column.name)
    pairs = None if step is None else step.get("rows")
    if not isinstance(pairs, RowPairs) or step["column"] != texts.name:  # read from a file: its name alone
        return 0
    matrix = to_numpy(column) if matrix is None else matrix
    has_vector = ~np.isnan(matrix).any(axis=1) & (np.abs(matrix).sum(axis=1) > 0)
    return pairs.changed(_text.texts(texts, "coerce"), matrix, has_vector)


def _from_column(column: "pd.Series", loaded: LoadedModel, options: RunOptions, texts: "pd.Series",
                 matrix: np.ndarray | None = None) -> Embedded:
    matrix = to_numpy(column) if matrix is None else matrix
    dim = loaded.dim_for(options)
    if matrix.shape[1] != dim and len(matrix):
        raise ValueError(f"The embeddings column {column.name!r} holds {matrix.shape[1]}-dimensional vectors but "
                         f"{loaded.name!r} makes {dim}-dimensional ones: pass the model that made the column as "
                         "model=, or drop embeddings= to compute them.")
    valid = ~np.isnan(matrix).any(axis=1) & (np.abs(matrix).sum(axis=1) > 0) & _has_text(texts)
    return Embedded(_search.unit(matrix, valid, copy=False), valid, loaded, options)


def embedded_column(columns: Sequence[Any], text_columns: Sequence[Any]) -> Any:
    """The text column search and duplicates read when none is named and a frame has not exactly one text
    column: the one of ``text_columns`` whose ``<column>_embedding`` is among ``columns`` (as embed leaves it);
    else None (the usual rule, and its error)."""
    if len(text_columns) == 1:
        return None
    held = [name for name in text_columns if out_name(name, "embedding") in columns]
    return held[0] if len(held) == 1 else None


def not_a_series(embeddings: Any) -> ValueError:
    """The error for ``embeddings=`` a column name given to the Series accessor, which has no other column."""
    return ValueError(f"Got embeddings={embeddings!r}, a column name, but a Series has no other columns: pass "
                      "embeddings= the Series of vectors itself (with the same index), or call the method on the "
                      f"frame, such as df.distil.search('a query', 'text', embeddings={embeddings!r}).")


def frame_embeddings(frame: "pd.DataFrame | None", texts: "pd.Series", model: str | os.PathLike | None,
                     options: RunOptions, embeddings: Any = None,
                     fallback: str | os.PathLike | None = None, *, quiet: bool = False) -> Embedded:
    """The embeddings of the text column ``texts`` of ``frame`` for search and duplicates: ``embeddings`` (a
    column name or a Series of vectors with the same index), else an existing ``<column>_embedding`` column,
    else the pipeline."""
    import pandas as pd

    existing = None
    if isinstance(embeddings, pd.Series):
        if len(embeddings) != len(texts) or not embeddings.index.equals(texts.index):
            raise ValueError(f"Got embeddings= a Series of {len(embeddings)} rows whose index is not the text "
                             f"column's ({len(texts)} rows): pass the vectors of the same rows, with the same index "
                             "(a column of the same frame, or its name).")
        existing = embeddings
    elif embeddings is not None and frame is None:  # the Series accessor: there is no other column to name
        raise not_a_series(embeddings)
    elif embeddings is not None:
        if embeddings not in frame.columns:
            raise _text.missing_column(embeddings, list(frame.columns))
        existing = frame[embeddings]
    elif frame is not None and out_name(texts.name, "embedding") in frame.columns:
        existing = frame[out_name(texts.name, "embedding")]
    return column_embeddings(texts, model, options, existing=existing, given=embeddings is not None, frame=frame,
                             fallback=fallback, quiet=quiet)


def query_vectors(queries: Sequence[str], embedded: Embedded) -> np.ndarray:
    """Unit embeddings of the queries, with the column's model and settings."""
    outcome = run("embed", list(queries), embedded.model, embedded.options.replace(progress=False))
    if not outcome.result.valid.all():
        bad = [q for q, ok in zip(queries, outcome.result.valid) if not ok]
        raise ValueError(f"The query {bad[0]!r} has no token for {embedded.model.name!r}: it matches nothing.")
    return _search.unit(outcome.result.values)


def result_names(frame: "pd.DataFrame") -> tuple[Any, Any]:
    """The names of the columns search results add: ``score`` and ``query``, or ``search_score`` and
    ``search_query`` where the frame already has a column of that name."""
    names = []
    levels = getattr(frame.columns, "nlevels", 1)  # a MultiIndex frame's new columns are full-length tuples
    for name in ("score", "query"):
        for candidate in (name, f"search_{name}"):
            if levels == 1 and candidate not in frame.columns:
                names.append(candidate)
                break
            if levels > 1 and candidate not in frame.columns.get_level_values(0):  # ("score", "x") is taken too
                names.append((candidate, *[""] * (levels - 1)))
                break
        else:
            raise ValueError(f"The frame has columns {name!r} and 'search_{name}', the names search results add: "
                             "rename one of them first.")
    return names[0], names[1]


def top_rows(embedded: Embedded, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and cosines of the ``k`` best rows for each query, best first (``_search.top_k``)."""
    return _search.top_k(embedded.matrix, embedded.valid, query_vectors(queries, embedded), k)


def results_frame(found: list["pd.DataFrame"], scores: list[np.ndarray], queries: list[str],
                  attrs: dict[str, Any]) -> "pd.DataFrame":
    """Search results: each query's rows (``found``) with ``score`` and, for several queries, ``query``
    (:func:`result_names`)."""
    import pandas as pd

    score_name, query_name = result_names(found[0])
    parts = []
    for rows, score, q in zip(found, scores, queries):
        part = rows.copy()
        part[score_name] = np.asarray(score, dtype=np.float32)
        if len(queries) > 1:
            part[query_name] = pd.array([q] * len(part), dtype=pd.StringDtype())
        parts.append(part)
    out = pd.concat(parts) if len(parts) > 1 else parts[0]
    out.attrs = dict(attrs)
    return out


def search(frame: "pd.DataFrame", embedded: Embedded, queries: list[str], k: int) -> "pd.DataFrame":
    """The ``k`` rows of ``frame`` nearest to each query, best first: every column of ``frame``, its index,
    ``score`` (cosine) and, for several queries, ``query`` (an exact :class:`SearchIndex`, used once)."""
    return SearchIndex(frame, embedded).search(queries, k)


class SearchIndex:
    """One text column's embeddings, held for repeated searches (``df.distil.search_index``).

    ``approximate=True`` builds faiss's inverted file once (extra ``ann``; ``_ann``): for tables where exact
    search is too slow per query. Scores are exact cosines either way; approximate search may miss rows
    (its recall@10 against exact search is measured in benchmarks/search.py).
    """

    def __init__(self, frame: "pd.DataFrame", embedded: Embedded, *, approximate: bool = False) -> None:
        if not isinstance(approximate, bool):
            raise ValueError(f"Got approximate={approximate!r} but expected True or False.")
        result_names(frame)
        # a snapshot: a later in-place change to the user's frame must not shift the rows found
        self.frame, self.embedded, self.approximate = frame.copy(deep=False), embedded, approximate
        self._graph = None
        if approximate:
            from ._ann import InvertedFile

            self._graph = InvertedFile(embedded.matrix, embedded.valid, threads=embedded.options.num_threads)

    def __len__(self) -> int:
        return int(self.embedded.valid.sum())

    def __repr__(self) -> str:
        kind = (f"approximate: {self._graph.probes} of {self._graph.lists} clusters probed" if self._graph is not None
                else "exact")
        return (f"SearchIndex({len(self):,} rows with text of {len(self.frame):,}, {self.embedded.model.name}, "
                f"{self.embedded.matrix.shape[1]} dimensions, {kind})")

    def search(self, query: str | list[str], k: int = 10) -> "pd.DataFrame":
        """The ``k`` rows nearest to the query (or queries): as ``df.distil.search``."""
        queries, k = check_queries(query), check_k(k)
        vectors = query_vectors(queries, self.embedded)
        graph = self._graph
        rows, scores = (graph.top_k(vectors, k) if graph is not None
                        else _search.top_k(self.embedded.matrix, self.embedded.valid, vectors, k))
        found = [self.frame.iloc[r[r >= 0]] for r in rows]
        return results_frame(found, [s[r >= 0] for r, s in zip(rows, scores)], queries, self.frame.attrs)


def duplicates(texts: "pd.Series", embedded: Embedded, threshold: float) -> "pd.DataFrame":
    """``<column>_dup_group`` (the same number for the rows of one group, in order of their first rows; null
    for a row in none) and ``<column>_dup_score`` (cosine to the group's first row). Rows of one text are
    always one group; missing and empty texts are in none."""
    import pandas as pd

    values = _text.texts(texts, "coerce")
    valid = np.asarray(embedded.valid, dtype=bool)
    first_of: dict[str, int] = {}
    first = np.arange(len(values))
    for i, t in enumerate(values):
        if valid[i]:
            first[i] = first_of.setdefault(t, i)
    distinct = np.flatnonzero(valid & (first == np.arange(len(values))))
    leader, score = _search.duplicate_groups(embedded.matrix[distinct], np.ones(len(distinct), dtype=bool),
                                             threshold)
    copies = np.bincount(first[valid], minlength=len(values))[distinct]
    alone = (leader < 0) & (copies > 1)  # a text that occurs twice is a group of its own
    leader[alone] = np.flatnonzero(alone)
    score[alone] = 1.0
    row_leader = np.full(len(values), -1, dtype=np.int64)
    row_score = np.full(len(values), np.nan, dtype=np.float32)
    at = np.full(len(values), -1, dtype=np.int64)
    at[distinct] = np.arange(len(distinct))
    pos = at[first[valid]]
    grouped = leader[pos] >= 0
    rows = np.flatnonzero(valid)
    row_leader[rows[grouped]] = distinct[leader[pos[grouped]]]
    row_score[rows[grouped]] = score[pos[grouped]]
    heads = np.unique(row_leader[row_leader >= 0])  # first rows, in row order
    number = np.full(len(values), -1, dtype=np.int64)
    number[heads] = np.arange(len(heads))
    group = pd.array(np.where(row_leader >= 0, number[row_leader], 0), dtype="Int64")
    group[row_leader < 0] = pd.NA
    name = texts.name
    out = pd.DataFrame({0: group, 1: row_score}, index=texts.index)
    out.columns = pd.MultiIndex.from_tuples([out_name(name, "dup_group"), out_name(name, "dup_score")]) \
        if isinstance(name, tuple) else [out_name(name, "dup_group"), out_name(name, "dup_score")]
    return out


def check_labels(labels: Any, template: Any) -> tuple[list[str], str]:
    listed = None if isinstance(labels, str) else _listed(labels)
    if listed is None or len(listed) < 2:
        raise ValueError(f"Got labels={_shown(labels)} but expected a list of at least two label names, such as "
                         "['shipping', 'quality', 'price'].")
    labels = listed
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"Got the label {label!r} but expected a non-empty string.")
        _check_unicode(label, "label")
    seen = {label for label in labels if labels.count(label) > 1}
    if seen:
        raise ValueError(f"Got labels={list(labels)!r} with {sorted(seen)!r} more than once: each label once.")
    template = DEFAULT_TEMPLATE if template is None else template
    fields = None
    if isinstance(template, str):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError:
            fields = None
    if fields != [""]:
        raise ValueError(f"Got template={template!r} but expected a string with one '{{}}' for the label (write "
                         "'{{' and '}}' for braces), such as 'This review is about {}.'.")
    _check_unicode(template, "template")
    return list(labels), template


def zero_shot(texts: "pd.Series", model: str | os.PathLike | None, options: RunOptions, labels: list[str],
              template: str) -> "pd.DataFrame":
    """``<column>_label`` and ``<column>_score`` (softmax over the labels of cosine / TEMPERATURE; with
    ``all_scores``, one column per label) by similarity to the labels put in ``template``."""
    model = default_model("search") if model is None else model
    check_label_prompts(model, options, labels, template)  # before any text is embedded, not after
    embedded, done = _pipeline_embeddings(texts, model, options)
    label_vectors = query_vectors([template.format(label) for label in labels], embedded)
    logits = (embedded.matrix @ label_vectors.T) / TEMPERATURE
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[~done.valid] = np.nan
    result = Result(values=probs.astype(np.float32), valid=done.valid, n_tokens=done.n_tokens,
                    status=done.status, max_length=done.max_length)
    schema = OutputSchema.of("classify", texts.name, options, labels=labels)
    frame = schema.to_pandas(result, texts.index)
    meta = zero_shot_metadata(texts.name, embedded.options, embedded.model, labels, template)
    frame.attrs[STEPS_KEY] = [{"task": "classify", "column": texts.name, "outputs": schema.names, "metadata": meta}]
    return frame


def check_label_prompts(model: str | os.PathLike, options: RunOptions, labels: list[str], template: str) -> None:
    """Refuse a label in which ``model`` reads no token, and two labels whose prompts it reads as the same
    tokens, as the run reads them ("Food" and "food" for a model that lower-cases; a long template cut at
    ``max_length`` before the label): they would score the same for every text, each at most half. Loads the
    model (the manager keeps it for the run)."""
    loaded = load("embed", model, options)
    options = loaded.fill(options)
    alone = loaded.tokenizer.encode(labels, max_length=options.max_length, long_text=options.long_text,
                                    stride=options.stride)
    empty = [label for label, n in zip(labels, alone.n_tokens) if n <= 2]  # [CLS] and [SEP] alone
    if empty:
        raise ValueError(f"Got the label {empty[0]!r}, in which {loaded.name!r} reads no token (zero-width or "
                         "control characters, or characters its vocabulary does not have): it would name nothing. "
                         "Give each label a word.")
    prompts = [template.format(label) for label in labels]
    enc = loaded.tokenizer.encode(prompts, max_length=options.max_length, long_text=options.long_text,
                                  stride=options.stride)
    read: list[list[bytes]] = [[] for _ in prompts]
    for owner, ids in zip(enc.owner, enc.ids):  # a label's windows, in order
        read[owner].append(ids.tobytes())
    seen: dict[tuple[bytes, ...], str] = {}
    for label, key in zip(labels, map(tuple, read)):
        if key in seen:
            raise ValueError(f"Got the labels {seen[key]!r} and {label!r}, which {loaded.name!r} reads as the same "
                             "tokens (its tokenizer lower-cases, strips accents or drops characters it does not "
                             f"know, or max_length={options.max_length} cuts the template before the label): they "
                             "would score the same for every text. Keep one of them, or shorten the template.")
        seen[key] = label


def zero_shot_metadata(column: Any, options: RunOptions, model: LoadedModel, labels: list[str],
                       template: str) -> dict[str, str]:
    """What a file of zero-shot labels records: the sentence model and its settings, the labels, the template."""
    meta = {**file_metadata("embed", column, options, model), "task": "classify", "labels": json.dumps(labels),
            "zero_shot_template": template, "zero_shot_temperature": str(TEMPERATURE)}
    meta.pop("dim", None)
    return meta



def added_columns(task: str, texts: "pd.Series", model: str | os.PathLike | None, options: RunOptions, *,
                  labels: Any = None, template: Any = None) -> "pd.DataFrame":
    """The output columns of ``task`` on a Series of texts, with its index: the pipeline's (the model's head
    for classify), or zero-shot labels by similarity when ``labels`` or ``template`` is given. What every
    front end adds to a frame."""
    if task == "classify" and (labels is not None or template is not None):
        labels, template = check_labels(labels, template)
        return zero_shot(texts, model, options, labels, template)
    return pandas_result(task, texts, model, options)
