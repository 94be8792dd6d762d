"""The docs people look for: the API reference is current, the README renders, the package has its files."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_reference_is_what_the_docstrings_give(tmp_path):
    pytest.importorskip("pdoc")
    out = tmp_path / "api"
    run = subprocess.run([sys.executable, str(ROOT / "docs/build_api.py"), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    built = sorted(p.relative_to(out) for p in out.rglob("*.html"))
    committed = sorted(p.relative_to(ROOT / "docs/api") for p in (ROOT / "docs/api").rglob("*.html"))
    assert built == committed, "run python docs/build_api.py and commit docs/api/"
    stale = [str(p) for p in built if (out / p).read_bytes() != (ROOT / "docs/api" / p).read_bytes()]
    assert stale == [], f"docs/api/ is out of date ({', '.join(stale)}): run python docs/build_api.py"
    page = (out / "distilframe.html").read_text(encoding="utf-8")
    assert "embed_file" in page and "RunOptions" in page and "to_numpy" in page


def test_the_readme_renders_every_table_whole():
    from markdown_it import MarkdownIt

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    in_tables = set()
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            start, end = token.map
            in_tables.update(range(start, end))
            header = [t for t in tokens[i:] if t.type == "tr_open"][0]
            widths = []
            depth_cells = 0
            for t in tokens[i:]:
                if t.type == "table_close":
                    break
                if t.type == "tr_open":
                    depth_cells = 0
                elif t.type in ("th_open", "td_open"):
                    depth_cells += 1
                elif t.type == "tr_close":
                    widths.append(depth_cells)
            assert len(set(widths)) == 1, f"table at line {start + 1} has rows of {sorted(set(widths))} cells"
            assert header is not None
    lines = text.splitlines()
    fenced = set()
    for token in tokens:
        if token.type == "fence":
            fenced.update(range(*token.map))
    stray = [n + 1 for n, line in enumerate(lines) if line.startswith("|") and n not in in_tables and n not in fenced]
    assert stray == [], f"README lines {stray} look like table rows but render as text"


def test_the_setup_commands_and_the_files_people_look_for():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first_block) == 2 and "examples/embed_csv.py" in first_block[0] and "pytest" in first_block[1]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and (ROOT / "CHANGELOG.md").is_file()
    version = subprocess.run([sys.executable, "-m", "distilframe", "--version"], capture_output=True, text=True,
                             timeout=120)
    import distilframe

    assert version.returncode == 0 and version.stdout.strip() == f"distilframe {distilframe.__version__}"
    import inspect

    assert "column" in inspect.signature(distilframe.embed_file).parameters  # help() shows the real signature
