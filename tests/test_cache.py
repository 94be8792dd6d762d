"""The result cache, and a model cache that concurrent processes and damaged files cannot break."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import distilframe
from conftest import TINY_SST2
from distilframe import _resolve as checkpoints
from distilframe._result_cache import ROW_OVERHEAD, ResultCache, default_cache, settings_key
from distilframe.cli import main
from distilframe.errors import CheckpointError
from distilframe._manager import get_model
from distilframe.testing import write_checkpoint
from servers import StaticServer

TEXTS = [f"the cat number {i} is {'happy' if i % 2 else 'sad'}" for i in range(40)]


def test_store_round_trip_settings_and_nan_rows(tmp_path):
    cache = ResultCache(tmp_path / "r.sqlite")
    a, b = settings_key(task="embed", pooling="mean"), settings_key(task="embed", pooling="cls")
    assert a != b and settings_key(task="embed", pooling="mean") == a
    keys = cache.keys(a, ["x", "y", "z"])
    assert keys != cache.keys(b, ["x", "y", "z"]) and len(set(keys)) == 3
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    values[2] = np.nan
    cache.put(keys, values, np.array([3, 4, 5]))
    found, got, tokens = cache.get(keys, 4)
    assert found.tolist() == [True, True, False]  # a row without a result is never stored
    np.testing.assert_array_equal(got[:2], values[:2])
    assert tokens[:2].tolist() == [3, 4]
    assert cache.info()["rows"] == 2 and cache.info()["bytes"] == 2 * (16 + ROW_OVERHEAD)
    assert cache.clear() == 2 and cache.info()["rows"] == 0


def test_least_recently_used_rows_go_first_past_the_cap(tmp_path):
    row = 16 + ROW_OVERHEAD
    cache = ResultCache(tmp_path / "r.sqlite", max_bytes=12 * row)  # eviction leaves 8 rows of 4 floats
    settings = settings_key(n=1)
    old = cache.keys(settings, [f"old {i}" for i in range(8)])
    cache.put(old, np.ones((8, 4), np.float32), np.zeros(8))
    assert cache.get(old, 4)[0].all()
    cache.get(old[:2], 4)  # read again: recently used
    new = cache.keys(settings, [f"new {i}" for i in range(4)])
    cache.put(new, np.ones((4, 4), np.float32), np.zeros(4))
    assert cache.info()["bytes"] <= 12 * row
    assert cache.get(old[:2], 4)[0].all() and cache.get(new, 4)[0].all()
    assert not cache.get(old[2:], 4)[0].all()


def test_unchanged_rows_skip_the_model_and_only_new_rows_run(monkeypatch, tmp_path, count_runs):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    folder = write_checkpoint(tmp_path / "ckpt", seed=80)
    seen = count_runs(get_model(folder))
    first = pd.Series(TEXTS).distil.embed(model=folder)
    assert sum(seen) == len(TEXTS)
    seen.clear()
    again = pd.Series(TEXTS).distil.embed(model=folder)
    assert seen == []  # every row came from the cache
    pd.testing.assert_series_equal(first, again)
    more = TEXTS[:36] + [f"a new dog {i}" for i in range(4)]
    seen.clear()
    out = pd.Series(more).distil.embed(model=folder, return_status=True)
    assert sum(seen) == 4  # only the new rows ran
    assert out["text_n_tokens"].iloc[0] == get_model(folder).tokenizer.encode([TEXTS[0]], max_length=512).n_tokens[0]
    seen.clear()
    pd.Series(TEXTS).distil.embed(model=folder, pooling="cls")  # other settings: other results
    assert sum(seen) == len(TEXTS)
    seen.clear()
    pd.Series(TEXTS).distil.embed(model=folder, cache=False)
    assert sum(seen) == len(TEXTS)
    with pytest.raises(ValueError, match="cache='yes'"):
        pd.Series(TEXTS).distil.embed(model=folder, cache="yes")


def test_a_checkpoint_changed_on_disk_does_not_reuse_old_results(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    folder = write_checkpoint(tmp_path / "ckpt", seed=81)
    before = distilframe.to_numpy(pd.Series(TEXTS).distil.embed(model=folder))
    write_checkpoint(folder, seed=82)  # other weights in the same folder
    after = distilframe.to_numpy(pd.Series(TEXTS).distil.embed(model=folder))
    fresh = distilframe.to_numpy(pd.Series(TEXTS).distil.embed(model=folder, cache=False))
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert not np.allclose(after, before)


def test_several_processes_write_the_same_cache_at_once(tmp_path):
    home = tmp_path / "home"
    folder = write_checkpoint(tmp_path / "ckpt", seed=83)
    code = ("import sys, pandas as pd, distilframe; part = int(sys.argv[1]); "
            f"texts = [f'row {{i}} of part {{part}}' for i in range(300)] + [f'shared {{i}}' for i in range(100)]; "
            f"pd.Series(texts).distil.embed(model={str(folder)!r}, batch_size=8)")
    env = {**os.environ, "DISTILFRAME_HOME": str(home)}
    jobs = [subprocess.Popen([sys.executable, "-c", code, str(k)], env=env, stderr=subprocess.PIPE, text=True)
            for k in range(3)]
    for job in jobs:
        assert job.wait(timeout=300) == 0, job.stderr.read()
    store = ResultCache(home / "results.sqlite")
    assert store.info()["rows"] == 3 * 300 + 100
    loaded = get_model(folder)
    from distilframe import _run as executor

    texts = [f"row {i} of part 2" for i in range(300)]
    result = executor.run(texts, loaded, cache=store)
    np.testing.assert_allclose(result.values, executor.run(texts, loaded).values, atol=1e-6)


def test_cache_commands(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    folder = write_checkpoint(tmp_path / "ckpt", seed=84)
    pd.Series(TEXTS[:5]).distil.embed(model=folder)
    assert main(["cache", "info"]) == 0
    printed = capsys.readouterr().out
    assert "results    5" in printed and str(tmp_path / "home" / "results.sqlite") in printed
    assert "MB of 1,024 MB (DISTILFRAME_CACHE_SIZE)" in printed
    assert main(["cache"]) == 0 and capsys.readouterr().out == printed  # info is the default action
    monkeypatch.setenv("DISTILFRAME_CACHE_SIZE", "500K")  # it printed "of 0 MB"
    default_cache().close()
    distilframe._result_cache._default.clear()
    assert main(["cache", "info"]) == 0 and "MB of 0.5 MB (DISTILFRAME_CACHE_SIZE)" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 5 cached results" in capsys.readouterr().out
    assert default_cache().info()["rows"] == 0


# ------------------------------------------------------------------------------ model cache trust

@pytest.fixture
def bos(tmp_path, seeded_home):
    root = tmp_path / "bos"
    shutil.copytree(seeded_home / "models" / TINY_SST2, root / "models/community" / TINY_SST2)
    return root


def test_two_processes_downloading_the_same_model_at_once(bos, tmp_path):
    server = StaticServer(bos)
    env = {**os.environ, "DISTILFRAME_HOME": str(tmp_path / "home"), "DISTILFRAME_ENDPOINT": server.url}
    code = f"from distilframe._resolve import resolve; print(resolve({TINY_SST2!r}).path)"
    try:
        jobs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [(job.wait(timeout=300), job.stdout.read(), job.stderr.read()) for job in jobs]
    finally:
        server.close()
    assert all(code == 0 for code, _, _ in outs), outs
    folder = tmp_path / "home/models" / TINY_SST2
    for name in ("model_state.pdparams", "vocab.txt", "model_config.json"):
        assert (folder / name).read_bytes() == (bos / "models/community" / TINY_SST2 / name).read_bytes()
    weights = [r for r in server.requests if r.endswith("model_state.pdparams")]
    assert len(weights) == 1  # one process downloaded, the others waited and used its files


def test_a_damaged_weights_file_is_fetched_again_or_reported(bos, tmp_path, monkeypatch):
    server = StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        folder = checkpoints.resolve(TINY_SST2).path
        good = (folder / "model_state.pdparams").read_bytes()
        (folder / "model_state.pdparams").write_bytes(good[:-10] + b"0123456789")  # same size, other bytes
        checkpoints.resolve(TINY_SST2)  # online: fetched again
        assert (folder / "model_state.pdparams").read_bytes() == good
        (folder / "model_state.pdparams").write_bytes(good[: len(good) // 2])  # truncated
        monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
        with pytest.raises(CheckpointError, match="model_state.pdparams .* is damaged .* Delete it"):
            checkpoints.resolve(TINY_SST2)
    finally:
        server.close()


def test_a_damaged_conversion_is_made_again_from_its_source(tmp_path, monkeypatch):
    from distilframe.testing import write_hf_checkpoint

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    hf = write_hf_checkpoint(tmp_path / "hf", seed=85)
    converted = checkpoints.resolve(hf).path
    good = (converted / "model_state.pdparams").read_bytes()
    (converted / "model_state.pdparams").write_bytes(good[: len(good) // 2])  # truncated
    assert checkpoints.resolve(hf).path == converted
    assert (converted / "model_state.pdparams").read_bytes() == good
    out = distilframe.convert(hf, tmp_path / "mine")
    (out / "vocab.txt").write_text("tampered\n")
    with pytest.raises(CheckpointError, match="is damaged .*vocab.txt"):
        distilframe.convert(hf, tmp_path / "mine")


def test_added_tokens_are_part_of_what_the_cache_keys_on(monkeypatch, tmp_path):
    import json

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    folder = write_checkpoint(tmp_path / "ckpt", seed=86)
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (folder / "vocab.txt").write_text("\n".join(vocab[:-1]) + "\n", encoding="utf-8")  # "your" leaves the vocab
    texts = ["hello your world"]
    before = distilframe.to_numpy(pd.Series(texts).distil.embed(model=folder))
    (folder / "added_tokens.json").write_text(json.dumps({vocab[-1]: len(vocab) - 1}))
    after = distilframe.to_numpy(pd.Series(texts).distil.embed(model=folder))
    fresh = distilframe.to_numpy(pd.Series(texts).distil.embed(model=folder, cache=False))
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert not np.allclose(after, before)


def test_a_damaged_cache_file_never_fails_the_work(monkeypatch, tmp_path, capsys):
    from distilframe.errors import CacheWarning

    home = tmp_path / "home"
    home.mkdir()
    (home / "results.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("DISTILFRAME_HOME", str(home))
    folder = write_checkpoint(tmp_path / "ckpt", seed=87)
    with pytest.warns(CacheWarning, match="cannot be used .* cache clear"):
        out = pd.Series(TEXTS[:3]).distil.embed(model=folder)
    assert out.notna().all()
    assert main(["cache", "clear"]) == 0  # removes the damaged file
    capsys.readouterr()
    fresh = ResultCache(home / "results.sqlite")
    assert fresh.info()["rows"] == 0


def test_a_users_edit_to_a_downloaded_config_is_not_damage(tmp_path, monkeypatch):
    from servers import HubServer
    from distilframe.testing import write_hf_checkpoint

    root = tmp_path / "hub"
    write_hf_checkpoint(root / "someone/cased", seed=88, cased=True)
    server = HubServer(root)
    monkeypatch.setenv("DISTILFRAME_HF_ENDPOINT", server.url)
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    try:
        checkpoints.resolve("hf:someone/cased")
        folder = tmp_path / "home/models/hf/someone/cased"
        (folder / "tokenizer_config.json").write_text('{"do_lower_case": false, "note": "mine"}')
        assert checkpoints.resolve("hf:someone/cased").do_lower_case is False
        assert "mine" in (folder / "tokenizer_config.json").read_text()
    finally:
        server.close()


def test_the_key_of_a_plain_model_with_default_options_is_what_it_always_was():
    # New options (sentence models: prompt, the model's own pooling) must not change existing keys: a cache
    # filled before them keeps serving. The settings below are those of every release so far.
    from distilframe import _run
    from distilframe._checkpoint import content_hash
    from distilframe._engine import GRAPH_VERSION
    from distilframe._options import DEFAULTS

    model = get_model("distilbert-base-uncased")
    ckpt = model.checkpoint
    want = settings_key(checkpoint=content_hash(ckpt), task="embed", distilframe=distilframe.__version__,
                        engine=type(model.engine).__name__, paddle=model.engine.paddle_version, graph=GRAPH_VERSION,
                        do_lower_case=ckpt.do_lower_case, strip_accents=ckpt.strip_accents,
                        tokenize_chinese_chars=ckpt.tokenize_chinese_chars, added_tokens=list(ckpt.added_tokens),
                        pooling="mean", normalize=True, max_length=512, long_text="truncate", stride=None,
                        precision=model.precision, multi_label=None)
    assert _run._settings(model, "embed", model.fill(DEFAULTS), 512) == want


# ------------------------------------------------------------------- trust, size, damaged files

def test_a_row_not_written_by_this_users_distilframe_is_a_miss(tmp_path, monkeypatch):
    import sqlite3

    cache = ResultCache(tmp_path / "r.sqlite")
    keys = cache.keys(settings_key(n=2), ["a good film", "a bad film"])
    cache.put(keys, np.ones((2, 4), np.float32), np.array([3, 4]))
    assert cache.get(keys, 4)[0].all()
    forged = np.full(4, 7.0, np.float32).tobytes()  # another user with write access to a shared folder
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        db.execute("UPDATE results SET value = ? WHERE key = ?", (forged, keys[0]))
    found, values, _ = cache.get(keys, 4)
    assert found.tolist() == [False, True] and (values[1] == 1).all()
    cache.put(keys[:1], np.full((1, 4), 2.0, np.float32), np.array([3]))  # computed again, overwritten
    assert cache.get(keys, 4)[0].all() and (cache.get(keys, 4)[1][0] == 2).all()
    monkeypatch.setenv("DISTILFRAME_CACHE_SECRET", str(tmp_path / "another-users-secret"))
    other = ResultCache(tmp_path / "r.sqlite")  # another user's rows are not trusted either
    assert not other.get(keys, 4)[0].any()
    assert oct((tmp_path / "another-users-secret").stat().st_mode & 0o777) == "0o600"


def test_the_cap_bounds_the_file_on_disk(tmp_path):
    cap = 32 << 20
    cache = ResultCache(tmp_path / "r.sqlite", max_bytes=cap)
    rng = np.random.default_rng(0)
    settings = settings_key(n=3)
    for start in range(0, 60_000, 2000):  # 92 MB of 384-float rows: three times the cap
        keys = cache.keys(settings, [f"text {i}" for i in range(start, start + 2000)])
        cache.put(keys, rng.standard_normal((2000, 384)).astype(np.float32), np.full(2000, 10))
    info = cache.info()
    assert info["bytes"] <= cap and info["disk_bytes"] <= 1.2 * cap, info  # it was 2.9x what was counted
    assert info["rows"] > 10_000  # and most of the cap holds rows


def test_one_call_larger_than_a_small_cap_stays_within_it(tmp_path):
    import threading

    from distilframe._result_cache import ROWS_SHARE

    cap = 4 << 20  # one call of 6,000 rows of 768 floats is 19 MB: it grew the file to 38.9 MB before
    cache = ResultCache(tmp_path / "r.sqlite", max_bytes=cap)
    rng = np.random.default_rng(1)
    settings = settings_key(n=4)
    peak, done = [0], threading.Event()

    def watch():  # the file and its log while the calls run
        while not done.is_set():
            peak[0] = max(peak[0], sum(p.stat().st_size for p in tmp_path.glob("r.sqlite*") if p.exists()))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for call in range(3):
            texts = [f"call {call} text {i}" for i in range(6000)]
            values = rng.standard_normal((6000, 768)).astype(np.float32)
            cache.put(cache.keys(settings, texts), values, np.full(6000, 7))
            info = cache.info()
            assert info["bytes"] <= cap and info["disk_bytes"] <= 1.05 * cap, (call, info)
    finally:
        done.set()
        watcher.join()
    assert peak[0] <= 1.35 * cap, peak[0] / cap  # during the calls: 1.20x measured (a 256 KiB log of 64 KiB pages)
    older = cache.keys(settings, [f"older {i}" for i in range(300)])  # a call that fits, older rows beside it
    cache.put(older, rng.standard_normal((300, 768)).astype(np.float32), np.full(300, 7))
    texts = [f"fits {i}" for i in range(1040)]  # 0.79 of the cap: eviction down to 0.72 took its first rows
    values = rng.standard_normal((1040, 768)).astype(np.float32)
    cache.put(cache.keys(settings, texts), values, np.full(1040, 7))
    found, got, _ = cache.get(cache.keys(settings, texts), 768)
    kept = int(found.sum())  # the call's last rows, as many as eviction leaves: none written then evicted
    assert found[-kept:].all() and kept == int(0.9 * ROWS_SHARE * cap) // (768 * 4 + ROW_OVERHEAD)
    assert np.array_equal(got[found], values[found])


def test_a_reader_in_another_process_never_blocks_a_put(tmp_path):
    # A sqlite3 shell, a backup or a long SELECT holding a snapshot: a put past the log's limit truncated the log,
    # which waits for every reader (60 s, the busy timeout). It now leaves the log for later.
    cache = ResultCache(tmp_path / "r.sqlite", max_bytes=4 << 20)
    settings, rng = settings_key(n=5), np.random.default_rng(2)
    cache.put(cache.keys(settings, ["x"]), np.ones((1, 768), np.float32), np.ones(1))
    reader = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, sys
db = sqlite3.connect({str(tmp_path / 'r.sqlite')!r}, isolation_level=None)
db.execute('BEGIN'); db.execute('SELECT count(*) FROM results').fetchone(); print('reading', flush=True)
sys.stdin.readline(); db.execute('COMMIT')"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        start = time.perf_counter()
        texts = [f"text {i}" for i in range(500)]
        cache.put(cache.keys(settings, texts), rng.standard_normal((500, 768)).astype(np.float32), np.ones(500))
        assert time.perf_counter() - start < 10  # it waited 60 s
        assert cache.get(cache.keys(settings, texts), 768)[0].all()
    finally:
        reader.communicate("\n", timeout=30)
    cache.put(cache.keys(settings, ["y"]), np.ones((1, 768), np.float32), np.ones(1))
    assert cache.info()["disk_bytes"] <= 1.05 * (4 << 20)  # the log truncated once the reader left


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "COMMIT"])
def test_a_ctrl_c_as_a_transaction_begins_or_commits_is_raised_and_leaves_no_lock(tmp_path, statement):
    # A SIGINT that arrives while SQLite runs in C is raised as the statement returns: after BEGIN it left the
    # write lock held (other processes waited 60 s, this one's cache was off); after COMMIT the ROLLBACK's error
    # replaced it (the Ctrl-C was lost, the cache turned off with a CacheWarning).
    import sqlite3
    import warnings

    cache = ResultCache(tmp_path / "r.sqlite")
    settings = settings_key(n=6)
    cache.put(cache.keys(settings, ["first"]), np.ones((1, 4), np.float32), np.ones(1))

    class Interrupted:
        def __init__(self, conn):
            self.conn, self.armed = conn, True

        def __getattr__(self, name):
            return getattr(self.conn, name)

        def execute(self, sql, *args):
            out = self.conn.execute(sql, *args)
            if sql == statement and self.armed:
                self.armed = False
                raise KeyboardInterrupt
            return out

    real = cache._conn
    cache._conn = Interrupted(real)
    keys = cache.keys(settings, ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CacheWarning
        with pytest.raises(KeyboardInterrupt):
            cache.put(keys, np.ones((2, 4), np.float32), np.ones(2))
        assert not real.in_transaction
        other = sqlite3.connect(tmp_path / "r.sqlite", timeout=0.5)
        other.execute("BEGIN IMMEDIATE")  # another writer gets the lock at once
        other.execute("ROLLBACK")
        other.close()
        cache.put(keys, np.full((2, 4), 2.0, np.float32), np.ones(2))  # and the cache still works
        found, values, _ = cache.get(keys, 4)
    assert found.all() and (values == 2).all()


def test_cache_commands_on_a_damaged_read_only_or_misplaced_cache(tmp_path, monkeypatch):
    import sqlite3

    home = tmp_path / "home"
    monkeypatch.setenv("DISTILFRAME_HOME", str(home))
    folder = write_checkpoint(tmp_path / "ckpt", seed=88)
    pd.Series(TEXTS[:5]).distil.embed(model=folder)
    default_cache().close()
    (home / "results.sqlite").write_bytes(b"garbage" * 1000)  # damaged, after holding 5 rows
    for name in list(home.glob("results.sqlite-*")):
        name.unlink()
    run = run_cli("cache", "info", env={**os.environ, "DISTILFRAME_HOME": str(home)})
    assert run.returncode == 2 and "damaged" in run.stderr and "cache clear" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run = run_cli("cache", "clear", env={**os.environ, "DISTILFRAME_HOME": str(home)})
    assert run.returncode == 0 and "removed the damaged cache file" in run.stdout
    assert not (home / "results.sqlite").exists()

    (home / "results.sqlite").mkdir()
    run = run_cli("cache", "info", env={**os.environ, "DISTILFRAME_HOME": str(home)})
    assert run.returncode == 2 and "is a folder, not a cache file" in run.stderr
    run = run_cli("cache", "clear", env={**os.environ, "DISTILFRAME_HOME": str(home)})
    assert run.returncode == 2 and (home / "results.sqlite").is_dir()  # a folder is never removed
    (home / "results.sqlite").rmdir()

    cache = ResultCache(home / "results.sqlite")
    err = sqlite3.OperationalError("attempt to write a readonly database")
    assert "not writable" in cache.advice(err) and "cache clear" not in cache.advice(err)


def test_a_read_only_home_says_what_to_do_with_a_hugging_face_checkpoint(tmp_path, monkeypatch):
    import errno

    from distilframe import _convert
    from distilframe.errors import CheckpointError
    from distilframe.testing import write_hf_checkpoint

    folder = write_hf_checkpoint(tmp_path / "hf", seed=89)
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_convert, "_write", read_only)  # as on a read-only mount (root ignores chmod)
    with pytest.raises(CheckpointError, match="not writable .*Read-only file system.*DISTILFRAME_HOME"):
        _convert.convert(folder)


def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "distilframe", *args], capture_output=True, text=True,
                          timeout=300, env=env)
