"""examples/quickstart.ipynb, executed in a real Jupyter kernel against the pre-seeded tiny checkpoints."""

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from distilframe import _resolve as checkpoints

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"


def text_of(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/html") or out["data"].get("text/plain", ""))
    return "\n".join(parts)


def test_quickstart_notebook_runs_and_its_panel_completes():
    nb = nbformat.read(ROOT / "examples/quickstart.ipynb", as_version=4)
    n_cells = len(nb.cells)
    # What a user does after pressing Run, and a check that it finished, in the same kernel.
    nb.cells.append(nbformat.v4.new_code_cell("panel.run(); panel.wait(300)\n"
                                              "print('panel:', panel.state, len(panel.result), panel.progress.value)"))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors

    dim = checkpoints.resolve("distilbert-base-uncased").hidden_size
    out = {i: text_of(c) for i, c in enumerate(code)}
    assert f"embeddings: (20, {dim}) rows without text: 2" in out[1]
    assert "review_embedding" in out[1]
    nearest = out[2]
    assert nearest.count("</tr>") == 4 and "cosine" in nearest  # header + the 3 nearest rows
    assert "review_label" in out[3] and "review_score_POSITIVE" in out[3]
    assert re.search(r"(NEGATIVE|POSITIVE)", out[4])
    assert any(WIDGET in o.get("data", {}) for o in code[5]["outputs"])  # the picker
    assert any(WIDGET in o.get("data", {}) for o in code[6]["outputs"])  # the panel
    assert "panel: done 20 20" in out[len(code) - 1]
    assert len(nb.cells) == n_cells + 1

    # The progress bar's last state went through the kernel's comms (from the panel's thread).
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert any(b.get("value") == 20 and b.get("max") == 20 for b in bars), bars
