import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

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
