"""The package's architecture, read from its source: layers, no import cycles, no private names across
modules, Paddle behind one door, a sorted and complete public API.

The layers are those of the README's Development section: a module imports only from its own layer
or the ones below (counting imports inside functions), never a front end, never another module's
private name; and the import graph has no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import distilframe

PACKAGE = Path(distilframe.__file__).parent

LAYERS = {
    0: ["errors", "_version", "_config", "_fs", "_options", "_paddle"],
    1: ["_registry", "_sentence", "_checkpoint"],
    2: ["_convert", "_download", "_resolve", "_result_cache"],
    3: ["_text", "_tokens", "_batches", "_engine", "_onnx", "_pool", "_manager", "_search", "_ann", "_pairs"],
    4: ["_run", "_pipeline", "_frame", "_defaults", "_similarity"],
    5: ["accessor", "files", "cli", "widgets", "dask", "polars", "sklearn", "_hooks", "testing", "__init__", "__main__"],
}
LAYER = {module: level for level, modules in LAYERS.items() for module in modules}
FRONT_ENDS = set(LAYERS[5])
# A front end calls the pipeline, never another front end; these two calls are part of the public API.
FRONT_END_CALLS = {
    ("accessor", "widgets"): "df.distil.panel() opens the notebook RunPanel (imported on call)",
    ("cli", "files"): "the distilframe command runs the file jobs embed_file / classify_file",
}
PADDLE_DOOR = "_paddle"  # the only module that imports paddle or paddlenlp


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def imports(tree: ast.Module, module: str):
    """(imported package module, names taken from it, line) for every import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "distilframe":
                    parts = node.module.split(".")[1:]
                    target = parts[0] if parts else "__init__"
                    yield target, [a.name for a in node.names], node.lineno, node.module
                else:
                    yield None, [a.name for a in node.names], node.lineno, node.module or ""
            elif node.level == 1:
                if node.module:
                    yield node.module.split(".")[0], [a.name for a in node.names], node.lineno, node.module
                else:  # from . import x, y: each is a module of the package (or a name of __init__)
                    for alias in node.names:
                        target = alias.name if (PACKAGE / f"{alias.name}.py").is_file() else "__init__"
                        yield target, [] if target == alias.name else [alias.name], node.lineno, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")
                if root[0] == "distilframe" and len(root) > 1:
                    yield root[1], [], node.lineno, alias.name
                else:
                    yield None, [], node.lineno, alias.name


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, tree in modules().items():
        graph[module] = {target for target, _, _, _ in imports(tree, module) if target and target != module}
    return graph


def test_every_module_has_a_layer():
    assert sorted(set(modules()) - set(LAYER)) == [], "add new modules to LAYERS (and the README's table)"
    assert sorted(set(LAYER) - set(modules())) == [], "LAYERS lists modules that are gone"


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in edges().items():
        for target in targets:
            if LAYER[target] > LAYER[module]:
                wrong.append(f"{module} (layer {LAYER[module]}) imports {target} (layer {LAYER[target]})")
            if target in FRONT_ENDS and module not in ("__init__", "__main__") and (module, target) not in FRONT_END_CALLS:
                wrong.append(f"{module} imports the front end {target}")
    assert wrong == []


def test_no_import_cycles_counting_imports_inside_functions():
    graph = edges()
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_private_names_across_modules():
    found = []
    for module, tree in modules().items():
        for target, names, line, _ in imports(tree, module):
            if target is None:
                continue
            found += [f"{module}.py:{line} imports {target}.{n}" for n in names if n.startswith("_")
                      and not n.startswith("__") and not (PACKAGE / f"{n}.py").is_file()]
    assert found == []


def test_only_one_module_imports_paddle_or_paddlenlp():
    found = []
    for module, tree in modules().items():
        for target, _, line, name in imports(tree, module):
            if target is None and name.split(".")[0] in ("paddle", "paddlenlp") and module != PADDLE_DOOR:
                found.append(f"{module}.py:{line} imports {name}")
    assert found == []


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    # The rules above must be able to fail: a fake package with both faults.
    (tmp_path / "a.py").write_text("def f():\n    from .b import _hidden\n")
    (tmp_path / "b.py").write_text("from . import a\n_hidden = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    graph = edges()
    assert graph == {"a": {"b"}, "b": {"a"}}
    with pytest.raises(AssertionError):
        test_no_private_names_across_modules()
    with pytest.raises(AssertionError):
        test_no_import_cycles_counting_imports_inside_functions()


def test_import_distilframe_stays_light():
    # Heavy packages distilframe itself would bring in (pandas 3 imports pyarrow on its own: not counted).
    code = ("import sys, pandas; before = set(sys.modules); import distilframe; "
            "heavy = ('paddle', 'paddlenlp', 'pyarrow', 'ipywidgets', 'dask', 'polars', 'sklearn', 'torch', "
            "'tokenizers', 'joblib', 'tqdm', 'filelock', 'requests', 'huggingface_hub', 'faiss'); "
            "print(sorted(m for m in heavy if m in sys.modules and m not in before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_all_is_sorted_and_complete():
    # As httpx's tests/test_exported_members.py: every public name is exported, in sorted order.
    public = sorted(n for n, v in vars(distilframe).items() if not n.startswith("_")
                    and getattr(v, "__module__", "distilframe").startswith("distilframe")
                    and not isinstance(v, type(sys)))
    assert distilframe.__all__ == sorted(distilframe.__all__)
    assert sorted(set(public) - set(distilframe.__all__)) == []
    for name in distilframe.__all__:
        assert hasattr(distilframe, name), name
