"""The ``distilframe`` command (also ``python -m distilframe``).

    distilframe embed INPUT OUTPUT --column text [--model M] [--keep id,title] ...
    distilframe classify INPUT OUTPUT --column review [--model M] [--all-scores] ...
    distilframe models
    distilframe download MODEL...
    distilframe info FILE
    distilframe cache info|clear
    distilframe --version

Errors print one line on stderr and exit with status 2; Ctrl-C exits with 130
and keeps the finished chunks for ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._batches import DEFAULT_BATCH_SIZE
from ._options import CHOICES, DEFAULTS, POOLINGS, RunOptions
from ._version import __version__
from .files import DEFAULT_CHUNK_ROWS

__all__ = ["main"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# `distilframe info`: what made the file first, then its shape, then when and with what it was written.
INFO_ORDER = ("task", "model", "checkpoint_hash", "column", "dim", "labels", "precision", "int8_recheck",
              "pooling", "normalize", "prompt", "sentence_modules",
              "all_scores", "max_length", "long_text", "stride", "rows", "columns", "created_at",
              "distilframe_version")

EMBED_EXAMPLE = """example:
  distilframe embed reviews.parquet embeddings.parquet --column text --keep id
  distilframe embed big.csv out.parquet --column body --model multilingual --resume
"""
CLASSIFY_EXAMPLE = """example:
  distilframe classify reviews.xlsx reviews-labelled.xlsx --column review --all-scores
  distilframe classify tickets.parquet labels.parquet --column text --model ./my-finetuned-distilbert
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="a .parquet, .csv, .tsv, .jsonl or .xlsx file")
    p.add_argument("--column", required=True, help="the text column")
    p.add_argument("--keep", type=_names, default=None, metavar="COL,COL",
                   help="input columns to carry over, comma-separated (default: all)")
    p.add_argument("--max-length", type=int, default=DEFAULTS.max_length, metavar="N",
                   help="tokens per model input, [CLS] and [SEP] included (default: the model's own; 512)")
    p.add_argument("--long-text", choices=CHOICES["long_text"], default=DEFAULTS.long_text,
                   help="texts over --max-length: keep their beginning, or read them whole in windows")
    p.add_argument("--stride", type=int, default=DEFAULTS.stride, metavar="N",
                   help=f"overlap of windows, in tokens (default {DEFAULTS.stride})")
    p.add_argument("--batch-size", type=_positive, default=DEFAULTS.batch_size, metavar="N",
                   help=f"inputs per batch at most (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--errors", choices=CHOICES["errors"], default=DEFAULTS.errors,
                   help="non-string values: stop with an error, or convert them with str() "
                        f"(default {DEFAULTS.errors})")
    p.add_argument("--precision", choices=CHOICES["precision"], default=DEFAULTS.precision,
                   help=f"auto: bf16 where it is faster than fp32 (AMX, or AVX512-BF16 on AMD/Hygon), else fp32 "
                        "(exact); bf16 is refused on CPUs without native bf16; int8: ONNX Runtime (extra int8), "
                        "faster there, cosine to fp32 about 0.99, near-tie classifications made again in fp32 "
                        "(DISTILFRAME_INT8_RECHECK; not zero-shot labels, which come from embeddings) "
                        f"(default {DEFAULTS.precision})")
    p.add_argument("--threads", type=_positive, default=DEFAULTS.num_threads, metavar="N",
                   help="CPU threads (default: all available)")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store results in the result cache")
    p.add_argument("--chunk-rows", type=_positive, default=DEFAULT_CHUNK_ROWS, metavar="N",
                   help=f"rows per chunk: memory use and resume granularity (default {DEFAULT_CHUNK_ROWS})")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command (on a "
                   "Parquet OUTPUT it already finished: nothing to do)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--sheet", metavar="NAME", help="the worksheet of an .xlsx INPUT (default: the first)")
    p.add_argument("--na-strings", action="store_true",
                   help="read CSV and .xlsx cells such as NA, null, nan, N/A, #N/A as missing, as pandas does "
                        "(default: they are text; only an empty cell is missing)")
    quiet = p.add_mutually_exclusive_group()
    quiet.add_argument("--quiet", action="store_true", help="no progress on stderr")
    quiet.add_argument("--progress", action="store_true", help="progress on stderr even when it is not a terminal")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected column names separated by commas, e.g. id,title")
    return names


def build_parser() -> argparse.ArgumentParser:
    from ._registry import DEFAULT_CLASSIFIER, DEFAULT_EMBEDDER

    parser = argparse.ArgumentParser(
        prog="distilframe",
        description="DistilBERT embeddings and sentiment for table files.",
        epilog="Run 'distilframe COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"distilframe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    embed = commands.add_parser("embed", help="embed a text column into a Parquet file", epilog=EMBED_EXAMPLE,
                                formatter_class=raw,
                                description="Embed the text column of INPUT into OUTPUT (Parquet): the kept "
                                            "columns plus <column>_embedding, a fixed-size list of float32.")
    _common(embed)
    embed.add_argument("output", help="a .parquet file, written only when complete")
    embed.add_argument("--model", default=DEFAULT_EMBEDDER, help=f"model name, hf:<owner>/<repo>, or a checkpoint "
                                                                 f"folder (default {DEFAULT_EMBEDDER})")
    embed.add_argument("--pooling", choices=POOLINGS, default=DEFAULTS.pooling,
                       help="default: the model's own (a sentence-transformers model's; mean for DistilBERT)")
    embed.add_argument("--no-normalize", dest="normalize", action="store_const", const=False,
                       default=DEFAULTS.normalize, help="keep raw vectors, not unit length (default: the model's own)")
    embed.add_argument("--prompt", default=DEFAULTS.prompt, help="text put before every text (sentence models)")
    embed.add_argument("--prompt-name", default=DEFAULTS.prompt_name, help="one of the model's prompts, by name")
    embed.set_defaults(func=_embed)

    classify = commands.add_parser("classify", help="add a label and a score per row", epilog=CLASSIFY_EXAMPLE,
                                   formatter_class=raw,
                                   description="Classify the text column of INPUT into OUTPUT (.parquet, .csv, "
                                               ".tsv or .xlsx): the kept columns plus <column>_label and "
                                               "<column>_score.")
    _common(classify)
    classify.add_argument("output", help="a .parquet, .csv, .tsv or .xlsx file, written only when complete")
    classify.add_argument("--model", default=DEFAULT_CLASSIFIER,
                          help=f"a fine-tuned classifier (default {DEFAULT_CLASSIFIER})")
    classify.add_argument("--all-scores", action="store_true", help="also one <column>_score_<LABEL> per label")
    classify.set_defaults(func=_classify)

    models = commands.add_parser("models", help="list the registered models and whether they are on disk",
                                 epilog="example:\n  distilframe models", formatter_class=raw)
    models.set_defaults(func=_models)

    download = commands.add_parser("download", help="fetch models into the cache, for offline machines",
                                   epilog="example:\n  distilframe download distilbert-base-uncased sst2\n"
                                          "  DISTILFRAME_HOME=/shared/cache distilframe download multilingual",
                                   formatter_class=raw)
    download.add_argument("names", nargs="+", metavar="MODEL", help="registered names, aliases or hf:<owner>/<repo>")
    download.set_defaults(func=_download)

    cache = commands.add_parser("cache", help="show or clear the result cache",
                                epilog="example:\n  distilframe cache info\n  distilframe cache clear",
                                formatter_class=raw)
    cache.add_argument("action", choices=("info", "clear"), nargs="?", default="info",
                       help="info (the default): where the cache is, how many results and MB it holds; "
                            "clear: remove every stored result")
    cache.set_defaults(func=_cache)

    info = commands.add_parser("info", help="show the embedding metadata and row count of an output file",
                               epilog="example:\n  distilframe info embeddings.parquet", formatter_class=raw)
    info.add_argument("file", help="a Parquet file written by distilframe")
    info.set_defaults(func=_info)
    return parser


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else (True if args.progress else None)


def _job_options(args: argparse.Namespace) -> dict:
    """The file job's arguments: the run options the command line has (named as RunOptions names them)."""
    given = {**vars(args), "num_threads": args.threads, "cache": not args.no_cache, "progress": _progress(args)}
    options = {k: v for k, v in given.items() if k in RunOptions.names()}
    return dict(column=args.column, model=args.model, keep=args.keep, resume=args.resume, overwrite=args.overwrite,
                sheet=args.sheet, na_strings=args.na_strings,
                chunk_rows=args.chunk_rows, **options)


def _report(result, args: argparse.Namespace) -> int:
    if result.already_complete:  # --resume on the finished output of this same job
        if not args.quiet:
            print(f"distilframe: {result.output} is already complete ({result.rows:,} rows, written by this same "
                  "job): nothing to do.", file=sys.stderr)
        return 0
    if not args.quiet:
        resumed = f", {result.resumed_chunks} resumed" if result.resumed_chunks else ""
        chunks = f"{result.chunks} chunk{'s' if result.chunks != 1 else ''}"
        print(f"distilframe: wrote {result.rows:,} rows to {result.output} ({chunks}{resumed}, "
              f"{result.seconds:.1f} s)", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .files import embed_file

    return _report(embed_file(args.input, args.output, **_job_options(args)), args)


def _classify(args: argparse.Namespace) -> int:
    from .files import classify_file

    return _report(classify_file(args.input, args.output, **_job_options(args)), args)


def _models(args: argparse.Namespace) -> int:
    from ._manager import models

    table = models()
    print(table[["name", "aliases", "tasks", "dim", "languages", "license", "on_disk"]].to_string(index=False))
    print("\nWhat each is for:")
    for row in table.itertuples():
        print(f"  {row.name}: {row.description}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ._resolve import resolve

    for name in args.names:
        checkpoint = resolve(name)
        print(f"{checkpoint.name}: {checkpoint.path}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from ._result_cache import default_cache
    from .errors import FileError

    import sqlite3

    store = default_cache()
    if store.path.is_dir():
        raise FileError(f"The result cache {store.path} is a folder, not a cache file: move it away, or set "
                        "DISTILFRAME_HOME elsewhere.")
    try:
        if args.action == "clear":
            removed = store.clear()
            if removed is None:
                print(f"removed the damaged cache file {store.path} (its rows could not be counted)")
            else:
                print(f"removed {removed:,} cached results from {store.path}")
            return 0
        info = store.info()
    except (sqlite3.Error, OSError) as e:
        raise FileError(f"The result cache {store.path} cannot be read ({type(e).__name__}: {e}). "
                        f"{store.advice(e)}") from None
    print(f"path       {info['path']}")
    print(f"results    {info['rows']:,}")
    cap = info['max_bytes'] / 2**20
    print(f"stored     {info['bytes'] / 2**20:,.1f} MB of {cap:,.{0 if cap >= 10 else 1}f} MB (DISTILFRAME_CACHE_SIZE)")
    print(f"on disk    {info['disk_bytes'] / 2**20:,.1f} MB")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .files import read_metadata

    meta = read_metadata(args.file)
    first = [k for k in INFO_ORDER if k in meta]
    meta = {**{k: meta[k] for k in first}, **{k: v for k, v in meta.items() if k not in first}}
    width = max(len(k) for k in meta)
    for key, value in meta.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key:<{width}}  {shown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    from .errors import DistilFrameError, DistilFrameWarning

    previous = _stop_on_signals()
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        what = f"stopped by {e.args[0]}" if isinstance(e, _Stopped) else "interrupted"
        print(f"distilframe: {what}. Finished chunks are kept: run the same command with --resume to "
              "continue.", file=sys.stderr)
        return 128 + e.args[1] if isinstance(e, _Stopped) else EXIT_INTERRUPTED
    except (DistilFrameError, DistilFrameWarning, ImportError, OSError, ValueError, TypeError, KeyError) as e:
        # (a DistilFrameWarning here was raised by a warnings-as-errors filter: -W error)
        message = " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())
        print(f"distilframe: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        _restore_signals(previous)


def run() -> None:
    """The ``distilframe`` command (and ``python -m distilframe``): :func:`main`, then exit with its status.

    Once the command has returned, its work is done (an output file is whole, or was never written): an
    interrupt while Python and Paddle clean up (about 0.3 s) is ignored, rather than turn a finished job into
    an interrupted one with Paddle's traceback. (A handler of Python's own would be reset before the modules'
    teardown; an ignored signal stays ignored through it.)

    distilframe's own warnings print as ``distilframe: warning: <message> (<category>)``: a command has no
    line of the user's to name (Python would name ``<frozen runpy>``); others keep Python's format. Not
    where ``warnings.showwarning`` is not Python's own (``logging.captureWarnings``); put back on return."""
    import warnings

    previous = warnings.showwarning
    if getattr(previous, "__module__", None) in ("warnings", "_py_warnings"):  # Python's own (not logging's)
        warnings.showwarning = _warning_printer(previous)
    try:
        code = main()
    finally:
        warnings.showwarning = previous
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def _warning_printer(previous):
    """``warnings.showwarning`` for the command: distilframe's warnings on one line, others to ``previous``."""
    from .errors import DistilFrameWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, DistilFrameWarning):
            return previous(message, category, filename, lineno, file, line)
        try:
            print(f"distilframe: warning: {message} ({category.__name__})", file=file or sys.stderr)
        except OSError:  # stderr closed, a broken pipe: as in Python's own, a warning that cannot be shown is dropped
            pass

    return show


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler, a closed terminal): handled as Ctrl-C is, finished chunks kept."""


def _stop_on_signals() -> dict:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(number, frame):
        raise _Stopped(signal.Signals(number).name, number)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, stop)
    return previous


def _restore_signals(previous: dict) -> None:
    import signal

    for number, handler in previous.items():
        if handler is not None:
            signal.signal(number, handler)


if __name__ == "__main__":
    sys.exit(main())
