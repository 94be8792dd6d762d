"""Give Dask DataFrames the ``.distil`` accessor without importing Dask at ``import distilframe``.

Dask registers accessors on its own classes, so ``dask.dataframe`` must be imported first; importing
it (about a second) for users who never use Dask would slow every ``import distilframe``. Instead:
if ``dask.dataframe`` is already imported, :mod:`distilframe.dask` is imported now; otherwise a
finder on ``sys.meta_path`` waits for ``dask.dataframe`` to finish importing, imports
:mod:`distilframe.dask` right after it, and removes itself. ``import distilframe.dask`` works too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

_TARGET = "dask.dataframe"


def install() -> None:
    if _TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _AfterDaskDataFrame) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterDaskDataFrame())


def _register() -> None:
    # Runs inside the user's `import dask.dataframe`: whatever goes wrong here must not break that import.
    try:
        importlib.import_module("distilframe.dask")
    except Exception as e:
        import warnings

        warnings.warn(f"distilframe could not give Dask DataFrames the .distil accessor ({type(e).__name__}: {e}); "
                      "pandas use is not affected. `import distilframe.dask` shows the full error.",
                      RuntimeWarning, stacklevel=2)


class _AfterDaskDataFrame(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, self)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _AfterDaskDataFrame) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register()

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for tracebacks and tools
        return getattr(self._loader, name)
