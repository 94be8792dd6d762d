"""Settings read from ``DISTILFRAME_*`` environment variables, in one place.

Values are read when asked for, not at import, so a notebook or a test can
change the environment and see the change.

=============================== ========================================== ======================
variable                        meaning                                    default
=============================== ========================================== ======================
``DISTILFRAME_HOME``            cache folder for weights                   ``~/.cache/distilframe``
                                                                           (``$XDG_CACHE_HOME`` if set)
``DISTILFRAME_ENDPOINT``        where PaddleNLP weights are downloaded     ``$PPNLP_ENDPOINT`` or
                                from                                       PaddleNLP's BOS server
``DISTILFRAME_HF_ENDPOINT``     where Hugging Face weights come from       ``$HF_ENDPOINT`` or
                                                                           https://huggingface.co
``DISTILFRAME_OFFLINE``         ``1`` never touches the network            ``0``
``DISTILFRAME_MAX_LOADED_MODELS`` models kept in memory per process (LRU)  ``2``
``DISTILFRAME_PRECISION``       what precision="auto" means: auto, fp32,   ``auto`` (bf16 where it is
                                bf16 or int8                               faster than fp32: AMX, or
                                                                           AVX512-BF16 on AMD; else fp32)
``DISTILFRAME_EMULATED_BF16``   ``1`` allows precision="bf16" on a CPU      ``0`` (refused: emulated
                                without native bf16 (to test that path)    bf16 is very slow)
``DISTILFRAME_ENGINE``          ``inference`` (Paddle Inference) or        ``inference``
                                ``dygraph``
``DISTILFRAME_CACHE_SIZE``      size cap of the result cache, in bytes     ``1073741824`` (1 GiB)
                                (suffixes K, M, G allowed)
``DISTILFRAME_NUM_THREADS``     CPU threads for Paddle                     ``OMP_NUM_THREADS`` as set
                                                                           before paddle was imported,
                                                                           else every available core
=============================== ========================================== ======================
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BF16_FLAGS", "available_cores", "cache_size", "converted_dir", "cpu_flags", "cpu_name", "cpu_vendor",
           "emulated_bf16", "endpoint", "engine", "fast_bf16", "hf_endpoint", "home", "int8_dot_products",
           "max_loaded_models", "models_dir", "native_bf16", "num_threads", "offline", "precision", "VNNI_FLAGS"]

# `import paddle` sets OMP_NUM_THREADS=1 when it is unset, so the user's own value can only be
# told apart from Paddle's before paddle is imported: remember it when distilframe is imported.
_OMP_BEFORE_PADDLE = None if "paddle" in sys.modules else os.environ.get("OMP_NUM_THREADS")

DEFAULT_ENDPOINT = "https://bj.bcebos.com/paddlenlp"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def home() -> Path:
    """The cache folder: ``$DISTILFRAME_HOME``, else ``$XDG_CACHE_HOME/distilframe``, else ``~/.cache/distilframe``."""
    value = os.environ.get("DISTILFRAME_HOME")
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "distilframe"


def models_dir() -> Path:
    """Where registered models are stored: ``<home>/models/<model name>/``."""
    return home() / "models"


def endpoint() -> str:
    """Base URL of PaddleNLP's model server, without a trailing slash."""
    value = os.environ.get("DISTILFRAME_ENDPOINT") or os.environ.get("PPNLP_ENDPOINT") or DEFAULT_ENDPOINT
    return value.rstrip("/")


def hf_endpoint() -> str:
    """Base URL of the Hugging Face hub, without a trailing slash."""
    value = os.environ.get("DISTILFRAME_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    return value.rstrip("/")


def converted_dir() -> Path:
    """Where Hugging Face checkpoints converted to PaddleNLP format are kept, by content hash."""
    return home() / "converted"


def offline() -> bool:
    """True when ``DISTILFRAME_OFFLINE`` asks never to touch the network."""
    return _flag("DISTILFRAME_OFFLINE")


def max_loaded_models() -> int:
    """How many models the process keeps loaded at once (least recently used goes first)."""
    raw = os.environ.get("DISTILFRAME_MAX_LOADED_MODELS", "2").strip()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"Got DISTILFRAME_MAX_LOADED_MODELS={raw!r} but expected a positive integer, such as 2."
        )
    return value


def precision() -> str:
    """What ``precision="auto"`` means: ``DISTILFRAME_PRECISION`` (auto, fp32, bf16 or int8), default auto."""
    value = os.environ.get("DISTILFRAME_PRECISION", "auto").strip().lower() or "auto"
    if value not in ("auto", "fp32", "bf16", "int8"):
        raise ValueError(f"Got DISTILFRAME_PRECISION={value!r} but expected auto, fp32, bf16 or int8.")
    return value


def int8_recheck() -> float:
    """``DISTILFRAME_INT8_RECHECK``: the logit margin under which an int8 classification is made again in fp32
    (``_pool.near_ties``); 0 never does. Default 1.0. Read when the manager hands out an int8 model
    (``LoadedModel.recheck``): one value per call."""
    raw = os.environ.get("DISTILFRAME_INT8_RECHECK", "1").strip() or "1"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"Got DISTILFRAME_INT8_RECHECK={raw!r} but expected a logit margin of 0 or more, such as 1 "
                         "(the default; 0 never classifies a row again in fp32).")
    return value


def engine() -> str:
    """``inference`` (Paddle Inference, the default) or ``dygraph`` (PaddleNLP's eager model)."""
    value = os.environ.get("DISTILFRAME_ENGINE", "inference").strip().lower() or "inference"
    if value not in ("inference", "dygraph"):
        raise ValueError(f"Got DISTILFRAME_ENGINE={value!r} but expected inference or dygraph.")
    return value


def cache_size() -> int:
    """Size cap of the result cache in bytes: ``DISTILFRAME_CACHE_SIZE`` (e.g. 500M, 2G), default 1 GiB."""
    raw = os.environ.get("DISTILFRAME_CACHE_SIZE", "").strip().upper()
    if not raw:
        return 1 << 30
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1], 1)
    number = raw[:-1] if raw[-1] in "KMG" else raw
    try:
        value = int(float(number) * scale)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"Got DISTILFRAME_CACHE_SIZE={raw!r} but expected a size in bytes, such as 500M or 2G.")
    return value


def num_threads() -> int | None:
    """Threads for Paddle: ``DISTILFRAME_NUM_THREADS``, else the user's ``OMP_NUM_THREADS``; None for all cores."""
    raw = os.environ.get("DISTILFRAME_NUM_THREADS", "").strip()
    if raw:
        value = _positive_int(raw)
        if value is None:
            raise ValueError(f"Got DISTILFRAME_NUM_THREADS={raw!r} but expected a positive integer, such as 2.")
        return value
    return _positive_int(_OMP_BEFORE_PADDLE)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, quota)) if quota else cores


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs a container's CPU quota allows, or None without a quota."""
    import math

    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return math.ceil(int(quota) / int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return math.ceil(quota / period)
    except (OSError, ValueError):
        pass
    return None


def _cpuinfo(field: str, cpuinfo: str | os.PathLike) -> str | None:
    """The first ``field : value`` line's value in ``cpuinfo`` (Linux's /proc/cpuinfo), or None."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (``avx2``, ``avx512_vnni``, ``amx_bf16``...) from ``cpuinfo``; empty if unknown."""
    return set((_cpuinfo("flags", cpuinfo) or "").split())


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name, for messages (``"this CPU"`` if unknown)."""
    return _cpuinfo("model name", cpuinfo) or "this CPU"


def cpu_vendor(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's vendor (``"GenuineIntel"``, ``"AuthenticAMD"``...), or ``""`` if unknown."""
    return _cpuinfo("vendor_id", cpuinfo) or ""


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16: without one of these, oneDNN emulates bf16 (or ignores it)


def native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow.

    ``cpuinfo`` is the file to read the CPU's flags from (tests pass another CPU's)."""
    return bool(cpu_flags(cpuinfo) & set(BF16_FLAGS))


def fast_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether bf16 is faster than fp32 on this CPU, so that ``precision="auto"`` takes it: with AMX (Intel
    Sapphire Rapids and later, where the flag is visible), or AVX512-BF16 on AMD or Hygon (Zen 4 and later).

    AVX512-BF16 without AMX on an Intel CPU, or on a CPU whose vendor is unknown, does not count: native, but
    slower than fp32 on Intel. Measured on 2 cores of an Intel Xeon (Emerald Rapids, AMX hidden by its
    hypervisor): bf16 0.77x fp32 through distilframe (77.8 against 100.8 sentences/s, distilbert-base size),
    0.62x in PyTorch, GEMMs 143 against 273 GFLOP/s; on an AMD EPYC with AVX512-BF16, 1.75x; with AMX, 4.7x."""
    flags = cpu_flags(cpuinfo)
    return "amx_bf16" in flags or ("avx512_bf16" in flags and cpu_vendor(cpuinfo) in ZEN_VENDORS)


ZEN_VENDORS = ("AuthenticAMD", "HygonGenuine")  # AVX512-BF16 there is faster than fp32 (Zen 4 and later)


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products that accumulate in 32 bits


def int8_dot_products(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU has VNNI or AMX-INT8: int8 products summed straight into 32 bits. Without them (AVX2,
    AVX-512 without VNNI) ONNX Runtime's u8s8 GEMM adds pairs of products in 16 bits, with saturation."""
    return bool(cpu_flags(cpuinfo) & set(VNNI_FLAGS))


def emulated_bf16() -> bool:
    """True when ``DISTILFRAME_EMULATED_BF16`` allows bf16 on a CPU without native bf16 (to test that path)."""
    return _flag("DISTILFRAME_EMULATED_BF16")


def _positive_int(raw: str | None) -> int | None:
    try:
        value = int(str(raw).strip())
    except ValueError:
        return None
    return value if value > 0 else None


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"Got {name}={raw!r} but expected 1 or 0 (true/false, yes/no, on/off).")
