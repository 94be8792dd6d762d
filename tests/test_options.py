"""RunOptions: every run option's default, choices and check, once; front ends take their defaults from it."""

import inspect
import re

import numpy as np
import pandas as pd
import pytest

import distilframe
from distilframe import _options, files
from distilframe._frame import OutputSchema
from distilframe._options import DEFAULTS, RunOptions
from distilframe._run import STATUSES, Result
from distilframe.accessor import DistilDataFrameAccessor, DistilSeriesAccessor
from distilframe.cli import build_parser


@pytest.mark.parametrize("change, message", [
    (dict(stride=-1), "Got stride=-1 but expected a non-negative integer"),
    (dict(max_length=2), "Got max_length=2 but expected an integer of at least 3"),
    (dict(max_length=512.0), "Got max_length=512.0"),
    (dict(batch_size=0), "Got batch_size=0 but expected a positive integer"),
    (dict(num_threads=0), "Got num_threads=0 but expected a positive integer"),  # was silently "default"
    (dict(num_threads=100_000), "Got num_threads=100000 but this machine has"),  # was accepted silently
    (dict(num_threads=-2), "Got num_threads=-2"),
    (dict(progress="yes"), "Got progress='yes' but expected True, False or None"),
    (dict(pooling="maxi"), "Got pooling='maxi' but expected one of 'mean', 'cls', 'max'"),
    (dict(pooling="cls+avg"), "Got pooling='cls+avg'"),
    (dict(prompt=3), "Got prompt=3 but expected a string"),
    (dict(long_text="split"), "Got long_text='split' but expected 'truncate' or 'chunk'"),
    (dict(errors="ignore"), "Got errors='ignore' but expected 'raise' or 'coerce'"),
    (dict(precision="fp16"), "Got precision='fp16' but expected 'auto', 'fp32', 'bf16' or 'int8'"),
    (dict(normalize="yes"), "Got normalize='yes' but expected True or False"),
    (dict(cache=1), "Got cache=1 but expected True or False"),
])
def test_a_bad_option_says_what_came_in_and_what_is_expected(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RunOptions(**change)
    with pytest.raises(ValueError, match=re.escape(message.split(" but")[0])):
        DEFAULTS.replace(**change)


def test_good_options_and_their_defaults():
    assert RunOptions(stride=0, num_threads=np.int64(2), normalize=np.bool_(False)).num_threads == 2
    assert RunOptions.pick({"self": object(), "stride": 7, "column": "x"}) == RunOptions(stride=7)
    with pytest.raises(AttributeError):
        DEFAULTS.stride = 3  # frozen: one definition, shared
    assert DEFAULTS.for_task("embed") == {"pooling": None, "normalize": None, "max_length": None,
                                          "long_text": "truncate", "stride": 128}  # None: the model's own
    filled = DEFAULTS.filled(pooling="mean", normalize=True, max_length=256, prompt=None)
    assert (filled.pooling, filled.normalize, filled.max_length) == ("mean", True, 256)
    assert RunOptions(pooling="cls").filled(pooling="mean").pooling == "cls"  # an explicit option wins
    assert list(DEFAULTS.for_task("classify")) == ["all_scores", "max_length", "long_text", "stride"]
    with pytest.raises(ValueError, match="Got task='tag' but expected 'embed' or 'classify'"):
        DEFAULTS.for_task("tag")


FRONT_ENDS = [DistilDataFrameAccessor.embed, DistilDataFrameAccessor.classify, DistilSeriesAccessor.embed,
              DistilSeriesAccessor.classify, files.embed_file, files.classify_file]


@pytest.mark.parametrize("function", FRONT_ENDS, ids=lambda f: f.__qualname__)
def test_every_signature_takes_its_defaults_from_the_one_definition(function):
    shown = {n: p.default for n, p in inspect.signature(function).parameters.items() if n in RunOptions.names()}
    assert shown and shown == {n: getattr(DEFAULTS, n) for n in shown}


def test_dask_signatures_too():
    pytest.importorskip("dask.dataframe")
    from distilframe.dask import DaskDistilDataFrameAccessor, DaskDistilSeriesAccessor

    for function in (DaskDistilDataFrameAccessor.embed, DaskDistilDataFrameAccessor.classify,
                     DaskDistilSeriesAccessor.embed, DaskDistilSeriesAccessor.classify):
        test_every_signature_takes_its_defaults_from_the_one_definition(function)


def test_the_command_line_takes_choices_and_defaults_from_the_options():
    args = build_parser().parse_args(["embed", "in.csv", "out.parquet", "--column", "t"])
    assert (args.max_length, args.long_text, args.stride, args.errors, args.precision, args.pooling) == (
        DEFAULTS.max_length, DEFAULTS.long_text, DEFAULTS.stride, DEFAULTS.errors, DEFAULTS.precision,
        DEFAULTS.pooling)
    embed = build_parser()._subparsers._group_actions[0].choices["embed"]
    choices = {a.dest: tuple(a.choices) for a in embed._actions if a.choices}
    allowed = {**_options.CHOICES, "pooling": _options.POOLINGS}
    assert choices == {k: v for k, v in allowed.items() if k in choices} and "precision" in choices


def test_bad_options_are_refused_before_any_model_is_loaded(fresh_manager):
    with pytest.raises(ValueError, match="num_threads=0"):
        pd.Series(["a"]).distil.embed(num_threads=0)
    with pytest.raises(ValueError, match="progress='yes'"):
        pd.DataFrame({"t": ["a"]}).distil.classify("t", progress="yes")
    assert fresh_manager.builds == {}


def fake_result(n_labels: int, dim: int) -> Result:
    width = dim or n_labels
    values = np.random.default_rng(0).random((4, width), dtype=np.float32)
    values[1] = np.nan
    return Result(values=values, valid=np.array([True, False, True, True]), n_tokens=np.array([5, -1, 600, 3]),
                  status=np.array(["ok", "null", "truncated", "ok"], dtype=object), max_length=512)


@pytest.mark.parametrize("task", ["embed", "classify"])
@pytest.mark.parametrize("return_status", [False, True])
@pytest.mark.parametrize("column", ["text", ("in", "text")])
def test_one_schema_gives_pandas_columns_dask_meta_and_arrow_columns_alike(task, return_status, column):
    options = RunOptions(return_status=return_status, all_scores=True)
    schema = OutputSchema.of(task, column, options, dim=8 if task == "embed" else 0, labels=("NEG", "POS"))
    result = fake_result(2, 8 if task == "embed" else 0)
    frame = schema.to_pandas(result, pd.Index([10, 11, 12, 13]))
    meta = schema.empty_pandas()  # what Dask is told the partitions hold
    assert list(frame.columns) == list(meta.columns) == schema.names
    assert frame.dtypes.to_dict() == meta.dtypes.to_dict()
    results = [n for n, kind in schema.kinds.items() if kind != "status"]
    assert frame[results].iloc[1].isna().all()  # the null row is null in every output column but its status
    arrow = schema.to_arrow(result)
    assert list(arrow) == schema.names
    # The row without a result: null, or NaN for float scores (as result files have always written them).
    assert all(len(arrow[n]) == 4 and (arrow[n][1].as_py() is None or np.isnan(arrow[n][1].as_py())) for n in results)
    if task == "embed":
        np.testing.assert_array_equal(distilframe.to_numpy(frame.iloc[:, 0])[[0, 2, 3]], result.values[[0, 2, 3]])
    else:
        assert frame.iloc[0, 0] == ("NEG", "POS")[int(np.argmax(result.values[0]))]
        np.testing.assert_array_equal(frame.iloc[:, 2:4].to_numpy(dtype=np.float32), result.values)
    if return_status:
        assert list(frame.iloc[:, -1].cat.categories) == list(STATUSES)
