"""Give Dask and Polars frames the ``.distil`` accessor without importing them at ``import distilframe``.

Dask and Polars register accessors (namespaces) on their own classes, so the library must be imported
first; importing it for users who never use it would slow every ``import distilframe`` (Dask: about a
second). Instead, for each front end: if its library is already imported, the front end is imported
now; otherwise a finder on ``sys.meta_path`` waits for the library to finish importing, imports the
front end right after it, and removes itself. ``import distilframe.dask`` (``.polars``) works too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

# library module whose import registers the front end -> (front end module, what it gives the accessor to)
HOOKS = {
    "dask.dataframe": ("distilframe.dask", "Dask DataFrames"),
    "polars": ("distilframe.polars", "Polars DataFrames, LazyFrames and Series"),
}


def install() -> None:
    for target in HOOKS:
        if target in sys.modules:
            _register(target)
        elif not any(isinstance(f, _After) and f.target == target for f in sys.meta_path):
            sys.meta_path.insert(0, _After(target))


def _register(target: str) -> None:
    # Runs inside the user's `import <target>`: whatever goes wrong here must not break that import.
    module, what = HOOKS[target]
    try:
        importlib.import_module(module)
    except Exception as e:
        import warnings

        warnings.warn(f"distilframe could not give {what} the .distil accessor ({type(e).__name__}: {e}); "
                      f"pandas use is not affected. `import {module}` shows the full error.",
                      RuntimeWarning, stacklevel=2)


class _After(importlib.abc.MetaPathFinder):
    def __init__(self, target: str) -> None:
        self.target = target

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.target:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _After) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, self)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _After) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register(self._finder.target)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for tracebacks and tools
        return getattr(self._loader, name)
