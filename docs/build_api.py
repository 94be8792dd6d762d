"""Build the API reference in docs/api/ from the docstrings, with pdoc (the version the test extra pins).

    python docs/build_api.py [OUTPUT_FOLDER]

tests/test_docs.py builds it again into a temporary folder and fails when docs/api/ differs: after
changing a public docstring or signature, run this script and commit docs/api/.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pdoc
import pdoc.render

HERE = Path(__file__).resolve().parent
# The public modules: the package (its __all__) and the documented front ends.
MODULES = ["distilframe", "distilframe.accessor", "distilframe.files", "distilframe.testing", "distilframe.errors",
           "distilframe.widgets", "distilframe.dask", "distilframe.polars", "distilframe.sklearn"]


def build(output: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    if output.exists():
        shutil.rmtree(output)
    pdoc.render.configure(docformat="numpy", search=False, show_source=False)
    pdoc.pdoc(*MODULES, output_directory=output)


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "api")
