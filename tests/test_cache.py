"""Engine cache: content keys, atomic entries, corruption, LRU pruning, read-only."""

from __future__ import annotations

import os
import time

import pytest

from byoc import cache as cache_mod
from byoc.cache import EngineCache, cache_key, describe_events, user_cache_dir


def test_keys_depend_on_every_part_and_its_boundaries():
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("graph", b"\x00consts", "trt 10.1") == cache_key(
        "graph", b"\x00consts", "trt 10.1"
    )
    assert cache_key("graph", "trt 10.1") != cache_key("graph", "trt 10.2")


def test_consts_digest_follows_every_constant_byte():
    import numpy as np

    from byoc.graph import Graph, JSONGraphNode, JSONGraphNodeEntry

    def graph() -> Graph:
        f32 = ("float32",)
        nodes = (
            JSONGraphNode("input", "x", shapes=((6,),), dtypes=f32),
            JSONGraphNode("const", "w", shapes=((6,),), dtypes=f32),
            JSONGraphNode(
                "kernel",
                "Add",
                (JSONGraphNodeEntry(0, 0), JSONGraphNodeEntry(1, 0)),
                shapes=((6,),),
                dtypes=f32,
            ),
        )
        return Graph(nodes, (JSONGraphNodeEntry(2, 0),), ("y",))

    w = np.arange(6, dtype=np.float32)
    base = cache_mod.consts_digest(graph(), {"w": w, "unused": w})
    assert base == cache_mod.consts_digest(graph(), {"w": w.copy()})
    assert base != cache_mod.consts_digest(graph(), {"w": w.reshape(2, 3)})
    assert base != cache_mod.consts_digest(graph(), {"w": w.astype(np.float64)})
    changed = w.copy()
    changed[5] = np.nextafter(changed[5], np.float32(9))
    assert base != cache_mod.consts_digest(graph(), {"w": changed})


def test_round_trip_hit_and_miss_are_recorded(tmp_path):
    c = EngineCache(tmp_path, name="t1")
    key = cache_key("x")
    assert c.get(key, label="sg_0") is None
    assert c.put(key, b"engine bytes", label="sg_0")
    assert c.get(key, label="sg_0") == b"engine bytes"
    assert (c.hits, c.misses) == (1, 1)
    mine = [e for e in cache_mod.events() if e.cache == "t1"]
    assert [(e.outcome, e.reason) for e in mine] == [
        ("miss", "not cached"),
        ("stored", ""),
        ("hit", ""),
    ]
    assert describe_events(mine)[:2] == [
        "t1 cache: 1 hits, 1 misses",
        "  miss sg_0: not cached",
    ]


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic"])
def test_corrupt_entries_are_misses_with_a_warning_and_removed(tmp_path, damage):
    c = EngineCache(tmp_path, name="t2")
    key = cache_key(damage)
    c.put(key, b"payload" * 100)
    path = c._path(key)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:20]
    elif damage == "flip":
        raw[-1] ^= 1
    else:
        raw[0:8] = b"NOTMAGIC"
    path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert c.get(key) is None
    assert not path.exists()


def test_lru_pruning_keeps_the_recently_used(tmp_path):
    c = EngineCache(tmp_path, max_bytes=3 * 1100)
    keys = [cache_key(str(i)) for i in range(3)]
    for i, k in enumerate(keys):
        c.put(k, bytes(1000))
        os.utime(c._path(k), (time.time() - 100 + i, time.time() - 100 + i))
    c.get(keys[0])  # refreshes key 0: key 1 is now the least recently used
    c.put(cache_key("new"), bytes(1000))
    present = {k for k in keys if c._path(k).exists()}
    assert present == {keys[0], keys[2]}
    assert c.size() <= c.max_bytes


def test_read_only_cache_serves_hits_but_never_writes(tmp_path):
    EngineCache(tmp_path).put(cache_key("k"), b"data")
    ro = EngineCache(tmp_path, read_only=True)
    assert ro.get(cache_key("k")) == b"data"
    assert not ro.put(cache_key("other"), b"x")
    assert not ro._path(cache_key("other")).exists()


def test_unwritable_directory_only_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    c = EngineCache(blocker / "sub")
    with pytest.warns(RuntimeWarning, match="could not store"):
        assert not c.put(cache_key("k"), b"data")


def test_user_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BYOC_CACHE_DIR", str(tmp_path))
    assert user_cache_dir("trt") == tmp_path / "trt"
    monkeypatch.delenv("BYOC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "byoc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir("dnnl") == tmp_path / "home" / ".cache" / "byoc" / "dnnl"


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(ValueError):
        EngineCache(tmp_path).get("../../etc/passwd")
