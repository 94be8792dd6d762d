"""The file pipeline and the command line: formats, atomic writes, resume after SIGKILL and Ctrl-C."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import distilframe
from conftest import SST2
from distilframe.cli import main
from distilframe.errors import FileError
from distilframe.files import classify_file, embed_file, read_metadata

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the cat is happy", "a bad movie", None, "hello world", "the cat is happy", "   ", "good film, i love it"]


@pytest.fixture
def frame():
    return pd.DataFrame({"id": range(len(TEXTS)), "title": [f"t{i}" for i in range(len(TEXTS))], "text": TEXTS})


def write_input(df, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix in (".csv", ".tsv"):
        df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_excel(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".jsonl", ".xlsx"])
def test_embed_every_input_format_like_the_accessor(tmp_path, frame, suffix):
    source = write_input(frame, tmp_path / f"in{suffix}")
    result = embed_file(source, tmp_path / "out.parquet", column="text", keep=["id"], chunk_rows=3)
    assert result.rows == len(TEXTS) and result.chunks == 3
    out = pd.read_parquet(tmp_path / "out.parquet")  # no pandas metadata: a plain read works
    assert list(out.columns) == ["id", "text_embedding"] and out["id"].tolist() == list(range(len(TEXTS)))
    X = distilframe.to_numpy(out["text_embedding"])
    want = distilframe.to_numpy(frame.distil.embed("text")["text_embedding"])
    np.testing.assert_allclose(X, want, atol=1e-6)
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert pa.types.is_fixed_size_list(schema.field("text_embedding").type)


def test_metadata_and_info(tmp_path, frame, capsys):
    source = write_input(frame, tmp_path / "in.parquet")
    embed_file(source, tmp_path / "out.parquet", column="text", pooling="cls", normalize=False, max_length=64)
    meta = read_metadata(tmp_path / "out.parquet")
    assert meta["model"] == "distilbert-base-uncased" and meta["pooling"] == "cls" and meta["normalize"] == "false"
    assert meta["max_length"] == "64" and meta["dim"] == "32" and meta["distilframe_version"] == distilframe.__version__
    assert len(meta["checkpoint_hash"]) == 32 and meta["created_at"].endswith("+00:00") and meta["rows"] == 7
    assert meta["columns"] == ["id", "title", "text", "text_embedding"]
    assert main(["info", str(tmp_path / "out.parquet")]) == 0
    printed = capsys.readouterr().out
    assert "checkpoint_hash" in printed and "rows" in printed and "dim" in printed
    write_input(frame, tmp_path / "rows.csv")
    with pytest.raises(FileError, match=r"'rows.csv' is not a Parquet file: only Parquet records the job"):
        read_metadata(tmp_path / "rows.csv")
    (tmp_path / "rows.csv").unlink()
    shutil.copy(tmp_path / "out.parquet", tmp_path / "renamed.parq")  # Parquet by its content, not its name
    assert read_metadata(tmp_path / "renamed.parq")["rows"] == 7
    (tmp_path / "renamed.parq").unlink()
    (tmp_path / "in.parquet").unlink()  # a folder of results: two jobs' files are not one result's parts
    embed_file(source := write_input(frame, tmp_path / "in.csv"), tmp_path / "other.pq", column="text")
    with pytest.raises(FileError, match=r"holds Parquet files of different results \(other.pq and out.parquet"):
        read_metadata(tmp_path)
    assert read_metadata(source.with_name("other.pq"))["rows"] == 7
    parts = tmp_path / "parts"  # one result's parts, whose workers resolved precision="auto" each their own way
    parts.mkdir()
    table = pq.read_table(tmp_path / "out.parquet")
    for i, precision in enumerate(["bf16", "fp32"]):
        kept = {**table.schema.metadata, b"distilframe.precision": precision.encode()}
        pq.write_table(table.replace_schema_metadata(kept), parts / f"part.{i}.parquet")
    described = read_metadata(parts)
    assert described["precision"] == "bf16, fp32" and described["rows"] == 14


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".xlsx"])
def test_classify_to_every_output_format(tmp_path, frame, suffix):
    source = write_input(frame, tmp_path / "in.xlsx")
    classify_file(source, tmp_path / f"out{suffix}", column="text", all_scores=True, chunk_rows=2)
    read = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"),
            ".xlsx": pd.read_excel}[suffix]
    out = read(tmp_path / f"out{suffix}")
    want = frame.distil.classify("text", all_scores=True)
    assert list(out.columns) == list(want.columns)
    assert out["text_label"].fillna("").tolist() == want["text_label"].fillna("").tolist()
    np.testing.assert_allclose(out["text_score"].astype(float), want["text_score"].astype(float), atol=1e-6)
    assert out["title"].tolist() == frame["title"].tolist()


def test_chunking_does_not_change_the_result(tmp_path):
    texts = [f"the cat number {i} is {'happy' if i % 3 else 'sad'}" for i in range(50)]
    source = write_input(pd.DataFrame({"text": texts}), tmp_path / "in.parquet")
    embed_file(source, tmp_path / "a.parquet", column="text", chunk_rows=7)
    embed_file(source, tmp_path / "b.parquet", column="text")
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.num_rows == b.num_rows == 50
    np.testing.assert_allclose(distilframe.to_numpy(a.to_pandas(types_mapper=pd.ArrowDtype)["text_embedding"]),
                               distilframe.to_numpy(b.to_pandas(types_mapper=pd.ArrowDtype)["text_embedding"]),
                               atol=1e-6)


def test_empty_input_gives_an_empty_output(tmp_path):
    source = write_input(pd.DataFrame({"id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype=str)}),
                         tmp_path / "in.parquet")
    result = embed_file(source, tmp_path / "out.parquet", column="text")
    table = pq.read_table(tmp_path / "out.parquet")
    assert result.rows == 0 and table.num_rows == 0 and table.column_names == ["id", "text", "text_embedding"]


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "distilframe", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def assert_one_line_error(run, *fragments):
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("distilframe: error:")]
    assert len(lines) == 1, run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_errors_are_one_line_exit_2_and_leave_nothing(tmp_path, frame, monkeypatch):
    source = write_input(frame, tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    assert_one_line_error(run_cli("embed", source, out, "--column", "txt"), "Column 'txt' not found",
                          "Did you mean 'text'?", "'title'")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    assert_one_line_error(run_cli("embed", bad, out, "--column", "text"), "Could not read 'bad.parquet' as PARQUET")
    assert_one_line_error(run_cli("embed", tmp_path / "in.docx", out, "--column", "text"), "unsupported extension")
    assert_one_line_error(run_cli("embed", tmp_path / "missing.csv", out, "--column", "text"), "does not exist")
    assert_one_line_error(run_cli("embed", source, tmp_path / "out.csv", "--column", "text"), "must end with .parquet")
    env = {**os.environ, "DISTILFRAME_OFFLINE": "1", "DISTILFRAME_HOME": str(tmp_path / "empty-home")}
    assert_one_line_error(run_cli("embed", source, out, "--column", "text", env=env),
                          "not on disk", "DISTILFRAME_OFFLINE=1")
    assert not out.exists() and not list(tmp_path.glob("out.parquet*"))
    out.write_text("keep me")
    assert_one_line_error(run_cli("embed", source, out, "--column", "text"), "already exists", "--overwrite")
    # A wrong column is named first: --overwrite would not have helped.
    assert_one_line_error(run_cli("embed", source, out, "--column", "txt"), "Column 'txt' not found",
                          "Did you mean 'text'?")
    assert_one_line_error(run_cli("embed", source, out, "--column", "text", "--keep", "id,nope"),
                          "Column 'nope' not found")
    assert out.read_text() == "keep me"
    ok = run_cli("embed", source, out, "--column", "text", "--overwrite", "--quiet")
    assert ok.returncode == 0 and ok.stderr.strip() == "" and pq.read_table(out).num_rows == len(TEXTS)
    # A warning is one line of its own, not located at "<frozen runpy>" (a command has no line of the user's).
    cut = run_cli("embed", source, out, "--column", "text", "--overwrite", "--quiet", "--max-length", "4")
    assert cut.returncode == 0 and cut.stderr.splitlines() == [
        "distilframe: warning: 3 of 4 distinct texts were longer than max_length=4 tokens and were truncated (only "
        "their beginning was used). Pass long_text='chunk' to read them whole. (TruncationWarning)"], cut.stderr


def test_a_read_only_output_folder_is_named_as_such(tmp_path, frame, monkeypatch):
    source = write_input(frame, tmp_path / "in.parquet")
    folder = tmp_path / "shared"
    folder.mkdir()
    if os.geteuid() != 0:  # the real thing (root writes anywhere)
        folder.chmod(0o555)
    else:  # as the kernel answers a user without write access: creating a file there is refused
        import distilframe._fs as fs

        real_open = os.open

        def refused(path, flags, *args, **kwargs):
            if Path(path).parent == folder:
                if flags & os.O_CREAT:
                    raise PermissionError(13, "Permission denied", str(path))
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(fs.os, "open", refused)
    try:
        with pytest.raises(FileError, match=re.escape(f"Cannot write in the output folder {str(folder)!r} "
                                                      "(Permission denied): write OUTPUT to a folder of yours")):
            embed_file(source, folder / "out.parquet", column="text", cache=False)
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_help_is_complete_and_has_examples():
    for command in ("embed", "classify", "models", "download", "info"):
        run = run_cli(command, "--help")
        assert run.returncode == 0 and "example:" in run.stdout, command
    assert "--resume" in run_cli("embed", "--help").stdout and "--all-scores" in run_cli("classify", "--help").stdout


def test_models_and_download_commands(capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "distilbert-base-uncased" in table and "on_disk" in table and "license" in table
    assert "What each is for:" in table  # one line per model
    assert "  sentence-transformers/distiluse-base-multilingual-cased-v2: Multilingual similarity" in table
    assert main(["download", "uncased", "sst2"]) == 0
    printed = capsys.readouterr().out
    assert "distilbert-base-uncased:" in printed and f"{SST2}:" in printed
    assert main(["download", "distilbert-base-uncasd"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def big_input(tmp_path, rows=20_000) -> Path:
    texts = [f"the story number {i} was {'good' if i % 2 else 'bad'} and the actor {i % 7}" for i in range(rows)]
    return write_input(pd.DataFrame({"id": range(rows), "text": texts}), tmp_path / "big.parquet")


def wait_for_parts(folder: Path, n: int, process, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(folder.glob("part-*.parquet"))) >= n:
            return
        if process.poll() is not None:
            raise AssertionError(f"the job ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.01)
    raise AssertionError("no progress")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["kill-9", "ctrl-c", "sigterm", "sighup"])
def test_an_interrupted_job_resumes_to_the_identical_file(tmp_path, sig):
    source = big_input(tmp_path)
    reference = tmp_path / "reference.parquet"
    assert run_cli("embed", source, reference, "--column", "text", "--chunk-rows", "400").returncode == 0

    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.distilframe-parts"
    job = subprocess.Popen([sys.executable, "-m", "distilframe", "embed", str(source), str(out), "--column", "text",
                            "--chunk-rows", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(parts, 3, job)
    job.send_signal(sig)
    job.wait(timeout=60)
    stderr = job.stderr.read()
    if sig == signal.SIGKILL:
        assert job.returncode == -signal.SIGKILL
    else:  # one line, as for Ctrl-C (Paddle's own handler would print a C++ "FatalError" dump)
        assert job.returncode == (130 if sig == signal.SIGINT else 128 + sig), stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--resume" in lines[0] and "FatalError" not in stderr, stderr
    assert not out.exists()  # OUTPUT only ever holds a complete file
    done = len(list(parts.glob("part-*.parquet")))
    assert 3 <= done < 50

    resumed = run_cli("embed", source, out, "--column", "text", "--chunk-rows", "400", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} resumed" in resumed.stderr
    assert pq.read_table(out).equals(pq.read_table(reference))  # identical, row for row
    assert not parts.exists()


def interrupted_job(tmp_path, source, out, parts: int):
    job = subprocess.Popen([sys.executable, "-m", "distilframe", "embed", str(source), str(out), "--column", "text",
                            "--chunk-rows", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(out.with_name(out.name + ".distilframe-parts"), parts, job)
    job.kill()
    job.wait(timeout=60)


def test_a_damaged_or_foreign_part_is_named_and_computed_again_first(tmp_path):
    source = big_input(tmp_path, rows=4000)
    reference = tmp_path / "reference.parquet"
    assert run_cli("embed", source, reference, "--column", "text", "--chunk-rows", "400").returncode == 0
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.distilframe-parts"
    interrupted_job(tmp_path, source, out, 3)
    (parts / "part-000001.parquet").write_bytes(b"half a part")
    foreign = pq.read_table(parts / "part-000002.parquet").replace_schema_metadata({b"distilframe_part_job": b"x"})
    pq.write_table(foreign, parts / "part-000002.parquet")
    done = len(list(parts.glob("part-*.parquet")))
    resumed = run_cli("embed", source, out, "--column", "text", "--chunk-rows", "400", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stderr.splitlines()
    assert "part-000001.parquet of the interrupted run is damaged" in lines[0]  # named before any work
    assert "part-000002.parquet was not written by the interrupted run" in lines[1]
    assert f"{done - 2} resumed" in resumed.stderr
    assert pq.read_table(out).equals(pq.read_table(reference))


def test_a_second_job_on_a_busy_output_is_refused_and_the_first_keeps_its_own_rows(tmp_path):
    first = big_input(tmp_path, rows=40_000)
    second = write_input(pd.DataFrame({"id": range(100), "text": ["another input"] * 100}), tmp_path / "in2.parquet")
    out = tmp_path / "out.parquet"
    job = subprocess.Popen([sys.executable, "-m", "distilframe", "embed", str(first), str(out), "--column", "text",
                            "--chunk-rows", "400", "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    wait_for_parts(tmp_path / "out.parquet.distilframe-parts", 1, job)
    refused = run_cli("embed", second, out, "--column", "text", "--overwrite")
    assert_one_line_error(refused, "Another distilframe job is writing", f"pid {job.pid}", "another OUTPUT")
    assert job.wait(timeout=300) == 0, job.stderr.read()
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(range(40_000))  # its own input's rows, all of them
    assert not (tmp_path / "out.parquet.distilframe-lock").exists()
    assert run_cli("embed", second, out, "--column", "text", "--overwrite").returncode == 0  # free again


def test_a_part_another_process_wrote_is_caught_before_the_output_is_replaced(tmp_path, monkeypatch):
    from distilframe import files

    source = big_input(tmp_path, rows=900)
    out = tmp_path / "out.parquet"
    out.write_text("the previous output")
    real = files._write_part
    calls = []

    def racing(table, path, job):
        calls.append(path)
        real(table, path, job if len(calls) != 2 else "another-job")

    monkeypatch.setattr(files, "_write_part", racing)
    with pytest.raises(FileError, match="not all this job's"):
        embed_file(source, out, column="text", chunk_rows=400, overwrite=True)
    assert out.read_text() == "the previous output"


def test_resume_refuses_changed_options_and_a_plain_run_starts_over(tmp_path):
    source = big_input(tmp_path, rows=3000)
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.distilframe-parts"
    job = subprocess.Popen([sys.executable, "-m", "distilframe", "embed", str(source), str(out), "--column", "text",
                            "--chunk-rows", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(parts, 2, job)
    job.kill()
    job.wait(timeout=60)
    changed = run_cli("embed", source, out, "--column", "text", "--chunk-rows", "100", "--resume", "--pooling", "cls")
    assert_one_line_error(changed, "Cannot resume", "pooling")
    fresh = run_cli("embed", source, out, "--column", "text", "--chunk-rows", "100")
    assert fresh.returncode == 0 and "starting over" in fresh.stderr
    assert pq.read_table(out).num_rows == 3000 and json.loads(
        pq.read_schema(out).metadata[b"distilframe.pooling"].decode().join('""')) == "mean"


def test_progress_goes_to_stderr_only_when_asked_or_on_a_terminal(tmp_path, frame):
    source = write_input(frame, tmp_path / "in.parquet")
    shown = run_cli("embed", source, tmp_path / "a.parquet", "--column", "text", "--progress")
    assert shown.returncode == 0 and "rows" in shown.stderr and "/s" in shown.stderr and "7/7" in shown.stderr
    quiet = run_cli("embed", source, tmp_path / "b.parquet", "--column", "text")  # stderr is a pipe here
    assert quiet.returncode == 0 and "/s" not in quiet.stderr and "wrote 7 rows" in quiet.stderr


# ------------------------------------------------------------------- what the file says, kept

NA_WORDS = ["NA", "null", "nan", "N/A", "NULL", "#N/A"]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_text_that_says_na_is_text_and_only_an_empty_cell_is_missing(tmp_path, suffix):
    df = pd.DataFrame({"note": NA_WORDS + ["", "kept"], "text": NA_WORDS + ["", "a good film"]})
    source = write_input(df, tmp_path / f"in{suffix}")
    out = tmp_path / "out.parquet"
    embed_file(source, out, column="text", cache=False)
    table = pq.read_table(out).to_pydict()
    assert table["text"][:6] == NA_WORDS and table["note"][:6] == NA_WORDS  # kept as the file has them
    assert table["text"][6] is None and table["note"][6] is None  # the empty cell
    assert all(v is not None for v in table["text_embedding"][:6]) and table["text_embedding"][6] is None
    # pandas' reading, on request (a spreadsheet's #N/A is also what a formula's error reads as)
    embed_file(source, out, column="text", cache=False, na_strings=True, overwrite=True)
    table = pq.read_table(out)
    assert table.column("text").null_count == 7 and table.column("note").null_count == 7
    assert table.column("text_embedding").null_count == 7 and table.column("text")[7].as_py() == "a good film"


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_na_strings_is_refused_where_the_format_records_nulls(tmp_path, suffix):
    source = write_input(pd.DataFrame({"text": ["NA", "a good film"]}), tmp_path / f"in{suffix}")
    assert_one_line_error(run_cli("embed", source, tmp_path / "out.parquet", "--column", "text", "--na-strings"),
                          f"Got --na-strings (na_strings=True) but 'in{suffix}' is not a CSV, TSV or .xlsx file",
                          "Leave the option out.")


@pytest.mark.parametrize("suffix", [".xlsx", ".jsonl"])
def test_mixed_columns_follow_the_accessors_row_rules(tmp_path, suffix):
    df = pd.DataFrame({"id": [1, 2, 3], "other": ["x", 7, None], "review": ["great film", 5, "awful"]})
    source = write_input(df, tmp_path / f"in{suffix}")
    out = tmp_path / "out.parquet"
    # As df.distil.embed says it, with the row a user finds in the file (the sheet's row 3, the file's record 2).
    where = "of sheet 'Sheet1' in 'in.xlsx' has 1 non-string value, in row 3 (int)" if suffix == ".xlsx" else \
        "of 'in.jsonl' (records counted from 1, blank lines skipped) has 1 non-string value, in record 2 (int)"
    with pytest.raises(TypeError, match=re.escape(f"Column 'review' {where}. Pass --errors coerce (errors='coerce') "
                                                  "to convert it")):
        embed_file(source, out, column="review", cache=False)
    assert not out.exists() and not (tmp_path / "out.parquet.distilframe-parts").exists()
    embed_file(source, out, column="review", errors="coerce", cache=False)
    table = pq.read_table(out)
    assert table.column("review").to_pylist() == ["great film", "5", "awful"]
    assert table.column("other").to_pylist() == ["x", "7", None]
    expected = df["review"].distil.embed(errors="coerce", cache=False)
    np.testing.assert_allclose(distilframe.to_numpy(table.column("review_embedding").to_pandas()),
                               distilframe.to_numpy(expected), atol=1e-6)


def test_a_json_lines_record_is_counted_without_its_blank_lines(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a good film"}\n\n{"text": "fine"}\n{"text": 5}\n')
    with pytest.raises(TypeError, match=re.escape("(records counted from 1, blank lines skipped) has 1 non-string "
                                                  "value, in record 3 (int)")):
        embed_file(source, tmp_path / "out.parquet", column="text", cache=False)


def workbook(path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    notes = book.active
    notes.title = "Notes"
    notes["A1"] = "read me first"
    reviews = book.create_sheet("Reviews")
    reviews.append(["id", "review", "stars", "double", "group"])
    for i, (text, stars) in enumerate([("a great film", 5), ("NA", 1), (None, 3), ("an awful film", 2)], start=2):
        reviews.append([i - 1, text, stars, f"=C{i}*2", "merged" if i == 2 else None])
    reviews.merge_cells("E2:E3")
    reviews["B2"].font = Font(bold=True)
    book.save(path)
    return path


def test_non_strings_in_a_sheet_are_named_by_sheet_row_and_cli_option(tmp_path):
    import openpyxl

    source = workbook(tmp_path / "in.xlsx")
    book = openpyxl.load_workbook(source)
    book["Reviews"]["B4"], book["Reviews"]["B5"] = 7.5, 12  # the second chunk of two rows
    book.save(source)
    out = tmp_path / "out.xlsx"
    run = run_cli("classify", source, out, "--column", "review", "--model", "sst2-tiny", "--sheet", "Reviews",
                  "--chunk-rows", "2")
    assert_one_line_error(run, "Column 'review' of sheet 'Reviews' in 'in.xlsx' has 2 non-string values, in rows "
                          "4 (float), 5 (int). Pass --errors coerce (errors='coerce') to convert them")
    assert not out.exists() and not list(tmp_path.glob("out.xlsx.*"))
    classify_file(source, out, column="review", model="sst2-tiny", sheet="Reviews", errors="coerce", cache=False,
                  chunk_rows=2)
    sheet = openpyxl.load_workbook(out)["Reviews"]
    assert [sheet[f"B{r}"].value for r in (4, 5)] == [7.5, 12]  # the workbook keeps its cells as they were
    assert sheet["F4"].value in ("NEGATIVE", "POSITIVE") and sheet["F5"].value in ("NEGATIVE", "POSITIVE")


def test_a_spreadsheet_in_is_the_same_spreadsheet_out(tmp_path):
    import openpyxl

    source = workbook(tmp_path / "in.xlsx")
    out = tmp_path / "out.xlsx"
    missing = run_cli("classify", source, out, "--column", "review", "--model", "sst2-tiny")
    assert_one_line_error(missing, "Column 'review' not found", "'Notes'", "'Reviews'", "--sheet")
    classify_file(source, out, column="review", model="sst2-tiny", sheet="Reviews", cache=False)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["Notes", "Reviews"] and book["Notes"]["A1"].value == "read me first"
    sheet = book["Reviews"]
    assert [c.value for c in sheet[1]] == ["id", "review", "stars", "double", "group", "review_label",
                                           "review_score"]
    assert sheet["D2"].value == "=C2*2" and sheet["B2"].font.bold  # formulas and formats kept
    assert [str(r) for r in sheet.merged_cells.ranges] == ["E2:E3"]
    assert sheet["B3"].value == "NA" and sheet["F3"].value in ("NEGATIVE", "POSITIVE")  # "NA" is a text
    assert sheet["F4"].value is None and sheet["G4"].value is None  # the empty cell: no label, no score
    expected = pd.Series(["a great film", "NA", None, "an awful film"]).distil.classify(model="sst2-tiny",
                                                                                       cache=False)
    assert [sheet.cell(row=r, column=6).value for r in range(2, 6)] == [
        None if pd.isna(v) else v for v in expected["text_label"]]
    bad = run_cli("classify", source, out, "--column", "review", "--sheet", "Sheet9", "--overwrite")
    assert_one_line_error(bad, "Got --sheet 'Sheet9'", "'Reviews'")


def test_classification_to_csv_writes_a_null_row_as_empty_cells(tmp_path):
    source = write_input(pd.DataFrame({"id": [1, 2], "text": ["a good film", None]}), tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    classify_file(source, out, column="text", model="sst2-tiny", cache=False)
    assert out.read_text().splitlines()[2] == '2,,,'


@pytest.mark.parametrize("errors", ["raise", "coerce"])
def test_invalid_utf8_in_a_csv_names_the_row_or_is_replaced(tmp_path, errors):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n1,a good film\n2,caf\xe9 au lait\n3,fine\n")
    out = tmp_path / "out.parquet"
    if errors == "raise":
        run = run_cli("embed", source, out, "--column", "text")
        assert_one_line_error(run, "Column 'text' of 'in.csv' (records counted from 1 below the header, blank lines "
                              "skipped) is not valid UTF-8 in record 2", "byte 3", "--errors coerce")
        assert not out.exists() and not (tmp_path / "out.parquet.distilframe-parts").exists()
    else:
        embed_file(source, out, column="text", errors="coerce", cache=False)
        assert pq.read_table(out).column("text").to_pylist() == ["a good film", "caf\ufffd au lait", "fine"]


def test_only_the_text_column_of_a_csv_is_read_as_bytes(tmp_path):
    # The text column is not the last one: the others keep their types, and the text column its UTF-8 check.
    source = tmp_path / "in.csv"
    source.write_bytes(b"text,id,note\na good film,1,x\ncaf\xe9,2,y\n")
    out = tmp_path / "out.parquet"
    embed_file(source, out, column="text", errors="coerce", cache=False)
    table = pq.read_table(out)
    assert table.schema.field("note").type == pa.string() and table.schema.field("id").type == pa.int64()
    assert table.column("text").to_pylist() == ["a good film", "caf\ufffd"]


# ------------------------------------------------------------------- one name per column

def repeated_header(path: Path) -> Path:
    """An input whose header names ``id`` twice: text,id,id."""
    if path.suffix == ".parquet":
        names = ["text", "id", "id"]
        pq.write_table(pa.Table.from_arrays([pa.array(["x", "y"]), pa.array([1, 2]), pa.array([3, 4])], names=names),
                       path)
    elif path.suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        for row in (["text", "id", "id"], ["x", 1, 2], ["y", 3, 4]):
            book.active.append(row)
        book.save(path)
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text("".join(sep.join(row) + "\n" for row in (["text", "id", "id"], ["x", "1", "2"])))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".xlsx"])
def test_a_repeated_column_name_is_refused_before_any_model_work(tmp_path, suffix, monkeypatch):
    from distilframe import _pipeline

    source = repeated_header(tmp_path / f"in{suffix}")
    out = tmp_path / "out.parquet"
    real = _pipeline.load

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the header was checked")

    monkeypatch.setattr(_pipeline, "load", no_model)
    for keep in (None, ["id"], ["text", "id"]):
        with pytest.raises(FileError, match=r"in\%s.* more than one column named 'id'" % suffix) as caught:
            embed_file(source, out, column="text", keep=keep)
        assert ("rename the repeated header cells" if suffix != ".parquet" else "name of its own") in str(caught.value)
        assert "--keep" in str(caught.value)
        assert not list(tmp_path.glob("out.parquet*"))  # no OUTPUT, no parts folder, no lock
    with pytest.raises(FileError, match="which names 'id' more than once"):  # the same name twice in keep
        embed_file(write_input(pd.DataFrame({"id": [1], "text": ["x"]}), tmp_path / "clean.csv"), out,
                   column="text", keep=["id", "text", "id"])
    monkeypatch.setattr(_pipeline, "load", real)
    embed_file(source, out, column="text", keep=["text"], cache=False)  # a repeated name the job does not read
    assert pq.read_table(out).column_names == ["text", "text_embedding"]


def test_a_repeated_text_column_is_refused_on_the_command_line_naming_file_and_column(tmp_path):
    source = tmp_path / "dupcol.csv"
    source.write_text("text,text,id\nx,y,1\n")
    out = tmp_path / "x.parquet"
    run = run_cli("embed", source, out, "--column", "text")
    assert_one_line_error(run, "'dupcol.csv' has more than one column named 'text'", "rename the repeated header")
    assert "--keep" not in run.stderr  # the text column cannot be left out
    assert not list(tmp_path.glob("x.parquet*"))


def test_an_input_column_named_as_an_output_column_is_replaced_with_a_note_or_refused_if_kept(tmp_path, capsys):
    source = write_input(pd.DataFrame({"text": ["a good film", "bad"], "text_embedding": ["old", "old"]}),
                         tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    with pytest.raises(FileError, match="Got --keep text_embedding .* writes its own 'text_embedding'"):
        embed_file(source, out, column="text", keep=["text_embedding"], cache=False)
    assert not list(tmp_path.glob("out.parquet*"))
    embed_file(source, out, column="text", cache=False)
    assert "'in.csv' has a column 'text_embedding' with the name of an output column" in capsys.readouterr().err
    schema = pq.read_schema(out)
    assert schema.names == ["text", "text_embedding"] and pa.types.is_fixed_size_list(schema.field(1).type)


# ------------------------------------------------------------------- --resume on a finished OUTPUT

def test_resume_on_the_finished_output_of_the_same_job_does_nothing_and_says_so(tmp_path, frame, monkeypatch):
    from distilframe import files

    source = write_input(frame, tmp_path / "in.csv")
    out = tmp_path / "w.parquet"
    parts = tmp_path / "w.parquet.distilframe-parts"
    real = files._Job._finish

    def killed_before_the_parts_are_removed(self, *args):
        shutil.copytree(self.parts, tmp_path / "kept-parts")
        real(self, *args)
        shutil.move(tmp_path / "kept-parts", self.parts)

    monkeypatch.setattr(files._Job, "_finish", killed_before_the_parts_are_removed)
    embed_file(source, out, column="text", chunk_rows=3)
    monkeypatch.undo()
    assert parts.exists() and len(read_metadata(out)["job_hash"]) == 32
    written = out.read_bytes()

    def no_work(*args, **kwargs):
        raise AssertionError("a finished output was computed again")

    monkeypatch.setattr(files._Job, "_chunks", no_work)
    monkeypatch.setattr(files._Job, "_finish", no_work)
    result = embed_file(source, out, column="text", chunk_rows=3, resume=True)
    assert result.already_complete and result.rows == len(TEXTS) and result.chunks == 0
    assert out.read_bytes() == written and not parts.exists()  # this job's leftover parts: removed
    parts.mkdir()
    (parts / "state.json").write_text('{"job": "another"}')  # another job's unfinished work is left alone
    assert embed_file(source, out, column="text", chunk_rows=3, resume=True).already_complete
    assert (parts / "state.json").exists()
    monkeypatch.undo()
    shutil.rmtree(parts)
    again = run_cli("embed", source, out, "--column", "text", "--chunk-rows", "3", "--resume")
    assert again.returncode == 0, again.stderr
    assert f"{out} is already complete (7 rows, written by this same job): nothing to do." in again.stderr
    assert out.read_bytes() == written


def test_resume_on_an_output_another_job_wrote_is_refused_saying_why(tmp_path, frame):
    source = write_input(frame, tmp_path / "in.parquet")
    out = tmp_path / "w.parquet"
    embed_file(source, out, column="text", cache=False)
    written = out.read_bytes()
    with pytest.raises(FileError, match=r"not this job's finished output: another job wrote it \(its pooling differs\)"
                                        r".*--overwrite"):
        embed_file(source, out, column="text", pooling="cls", cache=False, resume=True)
    with pytest.raises(FileError, match="the input file, or --keep"):
        embed_file(source, out, column="text", keep=["id"], cache=False, resume=True)
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # the input changed since
    with pytest.raises(FileError, match="the input file, or --keep"):
        embed_file(source, out, column="text", cache=False, resume=True)
    assert out.read_bytes() == written
    table = pq.read_table(out)
    pq.write_table(table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items()
                                                  if k != b"distilframe.job_hash"}), out)
    with pytest.raises(FileError, match="records no job_hash"):
        embed_file(source, out, column="text", cache=False, resume=True)
    pq.write_table(table.replace_schema_metadata(None), out)
    with pytest.raises(FileError, match="not written by distilframe"):
        embed_file(source, out, column="text", cache=False, resume=True)
    out.write_text("not parquet")
    with pytest.raises(FileError, match="not a readable Parquet file"):
        embed_file(source, out, column="text", cache=False, resume=True)
    assert out.read_text() == "not parquet" and not (tmp_path / "w.parquet.distilframe-parts").exists()
    labels = tmp_path / "labels.csv"  # a CSV records nothing of its job: refused, saying so
    classify_file(source, labels, column="text", model="sst2-tiny", cache=False)
    refused = run_cli("classify", source, labels, "--column", "text", "--model", "sst2-tiny", "--resume")
    assert_one_line_error(refused, "already exists, and a .csv file records nothing of the job", "--overwrite")


def test_chunks_whose_column_types_differ_fail_naming_the_file_and_leave_no_parts(tmp_path):
    source = tmp_path / "mixed.jsonl"  # v: numbers in the first chunk, a text in the second
    source.write_text('{"text": "a", "v": 1}\n{"text": "b", "v": 2}\n{"text": "c", "v": "x"}\n')
    out = tmp_path / "out.parquet"
    with pytest.raises(FileError, match=r"The chunks of 'mixed.jsonl' do not share column types \(.*Field v.*"
                                        r"--chunk-rows"):
        embed_file(source, out, column="text", chunk_rows=2, cache=False)
    assert not list(tmp_path.glob("out.parquet*"))  # bad data: no parts folder to resume
    embed_file(source, out, column="text", chunk_rows=3, cache=False)  # one chunk: a mixed column is text
    assert pq.read_table(out).column("v").to_pylist() == ["1", "2", "x"]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_an_input_changed_while_the_model_loads_is_not_taken_for_the_finished_job(tmp_path, frame, monkeypatch,
                                                                                    suffix):
    # A sheet is read whole before the model loads, a CSV chunk by chunk after: the job is the input file as it
    # was before any of it was read, so a finished OUTPUT never vouches for a file its rows did not come from.
    from distilframe import _pipeline

    source, out = write_input(frame, tmp_path / f"in{suffix}"), tmp_path / "w.parquet"
    real = _pipeline.load

    def load_and_change(*args, **kwargs):
        monkeypatch.setattr(_pipeline, "load", real)
        write_input(frame.assign(text="a new text"), source)
        os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))
        return real(*args, **kwargs)

    monkeypatch.setattr(_pipeline, "load", load_and_change)
    embed_file(source, out, column="text", cache=False)
    with pytest.raises(FileError, match="not this job's finished output"):
        embed_file(source, out, column="text", cache=False, resume=True)


def test_a_workbook_changed_while_the_job_ran_is_not_labelled_with_the_rows_it_had_before(tmp_path, frame,
                                                                                       monkeypatch):
    # An .xlsx OUTPUT is a copy of the input workbook with the labels added: read again at the end, it must still
    # be the workbook the labels were computed from, or they would land on other rows.
    from distilframe import _pipeline

    source, out = write_input(frame, tmp_path / "in.xlsx"), tmp_path / "out.xlsx"
    real = _pipeline.load

    def load_and_change(*args, **kwargs):
        write_input(frame.iloc[::-1], source)
        os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))
        return real(*args, **kwargs)

    monkeypatch.setattr(_pipeline, "load", load_and_change)
    with pytest.raises(FileError, match="'in.xlsx' changed while the job ran.*Run the command again"):
        classify_file(source, out, column="text", model="sst2-tiny", cache=False)
    assert not out.exists()


FINISHED_THEN_INTERRUPTED = """
import atexit, os, signal, sys, time

def teardown():  # as Paddle's cleanup at exit, interrupted by a Ctrl-C once the job is done: ignored
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)
    print("teardown went on", file=sys.stderr)

atexit.register(teardown)
sys.argv = ["distilframe", *sys.argv[1:]]
from distilframe.cli import run
run()
"""


def test_an_interrupt_after_the_command_finished_ends_it_quietly_with_its_status(tmp_path, frame):
    source, out = write_input(frame, tmp_path / "in.parquet"), tmp_path / "out.parquet"
    done = subprocess.run([sys.executable, "-c", FINISHED_THEN_INTERRUPTED, "embed", str(source), str(out),
                           "--column", "text", "--no-cache"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "teardown went on" in done.stderr
    assert "wrote" in done.stderr and len(pd.read_parquet(out)) == len(frame)
    refused = subprocess.run([sys.executable, "-c", FINISHED_THEN_INTERRUPTED, "embed", str(source), str(out),
                              "--column", "text"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "already exists" in refused.stderr  # its own status, kept
