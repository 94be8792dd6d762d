"""The one door to Paddle and PaddleNLP: no other module imports them.

Importing them is slow (``import paddle`` ~1 s, ``paddlenlp`` ~2.5 s more) and noisy (glog INFO
lines, warnings about their build tooling, the ``datasets`` logger), so it happens here, quietly,
on first use: ``import distilframe`` imports neither. The engine builds and runs models with the
Paddle this module returns; the converter writes Paddle state dicts and the downloader fetches
PaddleNLP weights through it, so that neither needs the engine. PaddleNLP is imported only to
download (its network is built from ``paddle.nn`` by the engine, see ``_engine._distilbert``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import _config as config

__all__ = ["UnsafeWeights", "bos_downloader", "gpu_visible", "load_state", "paddle", "paddlenlp_version",
           "quiet_imports", "save_state", "with_threads"]


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Paddle and PaddleNLP warn about their own build tooling on import, and the ``datasets`` package they
    import logs which torch it found: nothing a user can act on, and noise in ETL logs."""
    import logging

    datasets_log = logging.getLogger("datasets")
    level = datasets_log.level
    datasets_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache found")
            warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
            yield
    finally:
        datasets_log.setLevel(level)


_interrupted = ""  # how an import of Paddle was cut short in this process ("KeyboardInterrupt": a Ctrl-C)


def paddle() -> Any:
    """``import paddle``, quietly: Paddle's C++ side logs INFO and WARNING lines through glog (export and
    predictor details) to stderr, noise in notebooks and job logs. glog reads GLOG_minloglevel when paddle
    loads, so it is set for the import only (errors still show; a user's own setting is kept)."""
    global _interrupted
    if _interrupted:
        how = "Ctrl-C during the first call" if _interrupted == "KeyboardInterrupt" else _interrupted
        raise ImportError(f"Importing Paddle was interrupted in this process ({how}), and a half-imported Paddle "
                          "cannot be imported again: restart Python (in a notebook, restart the kernel), then run "
                          "again.", name="paddle")
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    user = os.environ.get("GLOG_minloglevel")
    os.environ.setdefault("GLOG_minloglevel", "2")
    handlers = _signal_handlers()
    try:
        with quiet_imports():
            import paddle as module
    except ImportError as e:
        raise ImportError(f"PaddlePaddle could not be imported ({e}). Install it: pip install "
                          "'paddlepaddle>=3.3,<3.4'.") from e
    except BaseException as e:  # a KeyboardInterrupt: its modules stay half-initialized in sys.modules
        _interrupted = type(e).__name__
        raise
    finally:
        if user is None:
            os.environ.pop("GLOG_minloglevel", None)
        _restore(handlers)
    return module


_SIGNALS = ("SIGTERM", "SIGHUP")


def _signal_handlers() -> dict:
    """The process's handlers of SIGTERM and SIGHUP. ``import paddle`` replaces them with its own, which
    prints a C++ ``FatalError ... Termination signal`` dump and aborts: a job stopped by its scheduler
    would end in that dump, past the CLI's one-line message and without Python's cleanup."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    found = {}
    for name in _SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not None:
            found[number] = signal.getsignal(number)
    return found


def _restore(handlers: dict) -> None:
    import signal

    for number, handler in handlers.items():
        signal.signal(number, handler)


def with_threads(num_threads: int | None) -> Any:
    """``paddle``, with a sensible thread count.

    ``import paddle`` sets OMP_NUM_THREADS=1 when it is unset (and prints a warning when it
    is set higher), which would run every matmul on one core. So the variable is left alone
    and the count is set after the import, the same for every model of the process:
    ``num_threads``, else ``config.num_threads()`` (DISTILFRAME_NUM_THREADS, or the user's
    OMP_NUM_THREADS), else every core available to the process. Measured on 2 cores:
    the same speed as OMP_NUM_THREADS=2, 1.5x that of one thread.
    """
    module = paddle()
    module.base.core.set_num_threads(num_threads or config.num_threads() or config.available_cores())
    return module


def _broken_paddlenlp(e: ImportError) -> ImportError:
    return ImportError(
        f"PaddleNLP could not be imported ({e}). paddlenlp 2.8.1 works only with "
        "huggingface_hub<0.26, aistudio-sdk<0.3 and datasets<3; another package may have upgraded "
        "them. Fix: pip install 'huggingface_hub<0.26' 'aistudio-sdk<0.3' 'datasets<3'."
    )


def bos_downloader() -> Callable[..., str]:
    """PaddleNLP's downloader for its model server (``bos_download``), without its INFO lines ("downloading
    <url> to <temp file>" reads like progress right before an error saying the download failed)."""
    import logging

    paddle()  # quietly, before PaddleNLP imports it
    with quiet_imports():
        try:
            from paddlenlp.utils.download.bos_download import bos_download
        except ImportError as e:
            raise _broken_paddlenlp(e) from e

    def quiet_download(*args: Any, **kwargs: Any) -> str:
        log = logging.getLogger("paddlenlp.utils.download.bos_download")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            return bos_download(*args, **kwargs)
        finally:
            log.setLevel(level)

    return quiet_download


def paddlenlp_version() -> str:
    """The installed PaddleNLP's version (without importing it), or "none"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paddlenlp")
    except PackageNotFoundError:
        return "none"


def save_state(state: dict[str, np.ndarray], path: Path) -> None:
    """Write weights as a Paddle state dict (``model_state.pdparams``), without importing Paddle.

    For a dict of numpy arrays ``paddle.save`` writes the plain pickle of that dict, protocol 4; this writes
    the same bytes in 0.57 s for distilbert-base where ``paddle.save`` takes 0.75 s. (Protocol 5 would take
    0.24 s, but the conversion cache is shared across distilframe versions, and earlier ones refuse it.)
    """
    import pickle

    arrays = {key: np.ascontiguousarray(value) for key, value in state.items()}
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=4)


# What a Paddle state dict (paddle.save of a dict of tensors or arrays, any Paddle since 2.0) is made of:
# numpy arrays and the containers around them. Nothing here can run code when it is rebuilt.
_STATE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol-2 pickles carry an array's bytes
    ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict"),
}
_PADDLE_KEYS = ("StructuredToParameterName@@", "UnpackBigParamInfor@@")  # bookkeeping paddle.save adds


class UnsafeWeights(Exception):
    """A weights file holds something besides arrays: loading it could run code, so it is not loaded."""


def load_state(path: Path) -> dict[str, Any]:
    """What a Paddle state-dict file (``.pdparams``) holds, as numpy arrays, without running any code.

    ``paddle.load`` unpickles the file unguarded: a ``.pdparams`` carrying an object with a
    ``__reduce__`` runs whatever it names. Here the pickle is read by an unpickler that rebuilds only
    numpy arrays and the containers Paddle writes; anything else raises UnsafeWeights naming it.
    Paddle itself is not imported.
    """
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _STATE_GLOBALS:
                return super().find_class(module, name)
            raise UnsafeWeights(f"{path} holds a {module}.{name}, which Paddle state dicts never hold; "
                                "distilframe does not load it, because unpickling it could run code")

        def persistent_load(self, pid: Any) -> Any:
            raise UnsafeWeights(f"{path} refers to external objects ({pid!r}): not a Paddle state dict")

    with open(path, "rb") as f:
        state = Restricted(f, encoding="latin1").load()
    if not isinstance(state, dict):
        raise UnsafeWeights(f"{path} holds a {type(state).__name__}, not a state dict")
    big = state.pop(_PADDLE_KEYS[1], None) or {}
    for key, info in big.items():  # paddle.save splits parameters over 4 GB into slices
        state[key] = np.concatenate([state.pop(part) for part in info["slices"]]).reshape(info["OriginShape"])
    state.pop(_PADDLE_KEYS[0], None)
    out = {}
    for key, value in state.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # Paddle 2.x wrote a tensor as (name, array)
        out[key] = value
    return out


def gpu_visible() -> bool:
    """A GPU build of Paddle, already imported, that sees a GPU (never imports paddle to find out)."""
    if "paddle" not in sys.modules:
        return False
    module = sys.modules["paddle"]
    try:
        return module.device.is_compiled_with_cuda() and module.device.cuda.device_count() > 0
    except Exception:
        return False
