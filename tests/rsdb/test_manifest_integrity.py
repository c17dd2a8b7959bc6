"""Manifest integrity, verified-by-default shards, non-zero Arrow offsets, Megatron checksums.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_manifest_integrity.py -q``
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rsdb
from rsdb import ShardError
from rsdb.manifest import dump_manifest, load_manifest, manifest_digest

from rsdb_testutil import batches_equal


def _corpus(d, n_docs=30, shard_tokens=100, seed=0):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 500, size=int(k)) for k in rng.integers(1, 40, size=n_docs)]
    rsdb.write_shards(d, docs, source="web", shard_tokens=shard_tokens, vocab_size=500)
    return [x.tolist() for x in docs]


def _m(d):
    return json.loads((d / "manifest.json").read_text())


def _put(d, m):
    (d / "manifest.json").write_text(json.dumps(m))


def _retotal(m):
    m["num_docs"] = sum(s["num_docs"] for s in m["shards"])
    m["num_tokens"] = sum(s["num_tokens"] for s in m["shards"])
    m["tokens_per_source"] = {m["source"]: m["num_tokens"]}


def test_writer_seals_and_reader_accepts(tmp_path):
    docs = _corpus(tmp_path)
    m = _m(tmp_path)
    assert m["format_version"] == 2 and m["digest"] == manifest_digest(m)
    assert [d.tolist() for d in rsdb.open_shards(tmp_path)] == docs
    # Layout does not matter, content does: reordered keys and other indentation read the same.
    (tmp_path / "manifest.json").write_text(json.dumps(dict(reversed(list(m.items())))))
    assert [d.tolist() for d in rsdb.open_shards(tmp_path)] == docs


@pytest.mark.parametrize("edit", ["duplicate", "remove", "swap", "total", "vocab"])
def test_edited_shard_list_is_refused(tmp_path, edit):
    _corpus(tmp_path)
    m = _m(tmp_path)
    assert len(m["shards"]) >= 3
    if edit == "duplicate":
        m["shards"].append(dict(m["shards"][0]))
        _retotal(m)
    elif edit == "remove":
        m["shards"].pop(1)
        _retotal(m)
    elif edit == "swap":
        m["shards"][0], m["shards"][2] = m["shards"][2], m["shards"][0]
    elif edit == "total":
        m["shards"][0]["num_docs"] += 1
        m["shards"][1]["num_docs"] -= 1
    else:
        m["vocab_size"] = 2**31
    _put(tmp_path, m)
    with pytest.raises(ShardError, match="listed twice" if edit == "duplicate" else "digest mismatch") as exc:
        rsdb.open_shards(tmp_path, verify="off")
    assert exc.value.path == str(tmp_path / "manifest.json")
    with pytest.raises(ShardError):
        rsdb.RSDBLoader({"web": str(tmp_path)}, seq_len=8, batch_size=1, epochs=1)


def test_duplicate_path_refused_even_when_sealed(tmp_path):
    _corpus(tmp_path)
    m = _m(tmp_path)
    m["shards"].append({**m["shards"][1], "file": "./" + m["shards"][1]["file"]})  # same file, other spelling
    _retotal(m)
    m["digest"] = manifest_digest(m)
    _put(tmp_path, m)
    with pytest.raises(ShardError, match=r"shards\[\d+\]\.file .* listed twice \(also shards\[1\]\)"):
        rsdb.open_shards(tmp_path)
    with pytest.raises(ShardError, match="listed twice"):
        dump_manifest(tmp_path, m)  # the writer refuses to seal it as well


@pytest.mark.parametrize(
    "where, value, needle",
    [
        ("bytes", None, r"shards\[0\]\.bytes"),
        ("bytes", "12", r"shards\[0\]\.bytes"),
        ("num_docs", 1.5, r"shards\[0\]\.num_docs"),
        ("num_tokens", True, r"shards\[0\]\.num_tokens"),
        ("xxh64", 7, r"shards\[0\]\.xxh64"),
        ("file", None, r"shards\[0\]\.file"),
        ("top:vocab_size", "500", r"vocab_size"),
        ("top:num_docs", None, r"num_docs"),
        ("top:shards", {}, r"shards"),
        ("top:tokens_per_source", [1], r"tokens_per_source"),
    ],
)
def test_wrong_field_types_are_shard_errors_naming_the_field(tmp_path, where, value, needle):
    _corpus(tmp_path, n_docs=4, shard_tokens=10**6)
    m = _m(tmp_path)
    if where.startswith("top:"):
        m[where[4:]] = value
    else:
        m["shards"][0][where] = value
    m["digest"] = manifest_digest(m)  # a sealed but ill-typed manifest: the model must still refuse it
    _put(tmp_path, m)
    with pytest.raises(ShardError, match=needle) as exc:
        rsdb.open_shards(tmp_path)
    assert exc.value.path.endswith("manifest.json")


def test_size_and_rows_disagreeing_with_entry_are_refused(tmp_path):
    _corpus(tmp_path, n_docs=6, shard_tokens=10**6)
    m = _m(tmp_path)
    m["shards"][0]["bytes"] += 8
    dump_manifest(tmp_path, m)
    with pytest.raises(ShardError, match="truncated or rewritten"):
        rsdb.open_shards(tmp_path, verify="off").view(0)
    m["shards"][0]["bytes"] -= 8
    m["shards"][0]["num_docs"] += 1
    m["num_docs"] += 1
    m["shards"][0].pop("xxh64")  # so that the row count, not the checksum, is what disagrees
    dump_manifest(tmp_path, m)
    with pytest.raises(ShardError, match="holds 6 documents but the manifest says 7"):
        rsdb.open_shards(tmp_path).view(0)


def test_version_1_manifest_is_read_with_a_warning(tmp_path, caplog):
    docs = _corpus(tmp_path, n_docs=5, shard_tokens=10**6)
    m = _m(tmp_path)
    m.pop("digest")
    m["format_version"] = 1
    _put(tmp_path, m)
    with caplog.at_level(logging.WARNING, logger="rsdb.manifest"):
        assert [d.tolist() for d in rsdb.open_shards(tmp_path)] == docs
    assert "without a digest" in caplog.text
    m["shards"].append(dict(m["shards"][0]))
    _retotal(m)
    _put(tmp_path, m)
    with pytest.raises(ShardError, match="listed twice"):  # duplicates are refused in version 1 too
        load_manifest(tmp_path)


# ---- verification by default ------------------------------------------------------------


def _flip_token(d, old=None):
    """Replace one token with another valid id: only a checksum can notice."""
    shard = d / "shard-00000.arrow"
    view = rsdb.open_shards(d, verify="off").view(0)
    tok = int(view[0][0])
    data = bytearray(shard.read_bytes())
    pos = bytes(data).find(np.asarray(view[0][:4], np.uint32).tobytes())
    data[pos : pos + 4] = np.uint32((tok + 1) % 500).tobytes()
    shard.write_bytes(bytes(data))
    return tok


def test_default_verification_catches_a_valid_looking_token_flip(tmp_path):
    docs = _corpus(tmp_path, n_docs=10, shard_tokens=10**6)
    tok = _flip_token(tmp_path)
    assert rsdb.open_shards(tmp_path, verify="off")[0][0] == (tok + 1) % 500  # structure alone cannot tell
    with pytest.raises(ShardError, match="xxh64 checksum mismatch"):
        rsdb.open_shards(tmp_path)[0]
    with pytest.raises(ShardError, match="xxh64 checksum mismatch") as exc:
        next(iter(rsdb.RSDBLoader({"web": str(tmp_path)}, seq_len=8, batch_size=1)))
    assert exc.value.path.endswith("shard-00000.arrow")
    got = [b for b in rsdb.RSDBLoader({"web": str(tmp_path)}, seq_len=8, batch_size=1, epochs=1, verify="off")]
    assert sum(int(b["loss_mask"].sum()) for b in got) == sum(map(len, docs))


def test_checksum_runs_in_the_background_thread_and_reads_ahead(tmp_path, monkeypatch):
    _corpus(tmp_path, n_docs=30, shard_tokens=100)
    threads: list[tuple[str, str]] = []
    real = rsdb.shards.check_checksum

    def spy(path, info):
        threads.append((path.name, threading.current_thread().name))
        real(path, info)

    monkeypatch.setattr(rsdb.shards, "check_checksum", spy)
    s = rsdb.open_shards(tmp_path)
    assert threads == []  # opening reads only the manifest
    s.view(0)
    s._checks[1].result()  # the read-ahead of shard 1 was started by opening shard 0
    assert [n for n, _ in threads] == ["shard-00000.arrow", "shard-00001.arrow"]
    assert all(t.startswith("rsdb-verify") for _, t in threads)
    s.view(0)
    s.view(1)
    s._checks[2].result()
    assert [n for n, _ in threads] == ["shard-00000.arrow", "shard-00001.arrow", "shard-00002.arrow"]  # once each


def _open_in_child(path):
    return [d.tolist() for d in rsdb.open_shards(path)]


def test_verification_works_in_forked_workers(tmp_path):
    docs = _corpus(tmp_path, n_docs=20, shard_tokens=100)
    rsdb.open_shards(tmp_path).view(0)  # the parent's verify thread exists before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_open_in_child, (tmp_path,)).get(timeout=60) == docs


def test_verify_argument_is_checked(tmp_path):
    _corpus(tmp_path, n_docs=2)
    with pytest.raises(rsdb.ConfigError, match="verify must be"):
        rsdb.open_shards(tmp_path, verify="sometimes")
    with pytest.raises(rsdb.ConfigError, match="verify"):
        rsdb.RSDBLoader({"web": str(tmp_path)}, verify="sometimes")


# ---- Arrow list offsets that do not start at 0 ---------------------------------------------


def _offset_copy(src, dst, pad):
    """``dst``: ``src`` with shard 0 rewritten so its list offsets start at ``pad`` (legal Arrow)."""
    import shutil
    import sys
    from pathlib import Path

    shutil.copytree(src, dst)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from fuzz_shards import make_offset_shard
    finally:
        sys.path.pop(0)
    make_offset_shard(dst, 0, pad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=12).filter(any), pad=st.integers(1, 50),
       seed=st.integers(0, 2**16))
def test_nonzero_first_offset_is_honoured(tmp_path_factory, lengths, pad, seed):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 500, size=n).tolist() for n in lengths]
    src = tmp_path_factory.mktemp("src") / "s"
    rsdb.write_shards(src, docs, vocab_size=500)
    dst = tmp_path_factory.mktemp("dst") / "s"
    _offset_copy(src, dst, pad)
    col = pa.ipc.open_file(pa.memory_map(str(dst / "shard-00000.arrow"))).get_batch(0).column("tokens")
    assert int(np.frombuffer(col.buffers()[1], np.int64, count=1)[0]) == pad  # the file really starts at pad
    assert col.to_pylist() == docs  # and Arrow itself reads it as the same documents
    for verify in ("off", "checksum", "full"):
        got = rsdb.open_shards(dst, verify=verify)
        assert [d.tolist() for d in got] == docs and got.view(0).offsets[0] == 0
    kw = dict(seq_len=7, batch_size=2, buffer_docs=3, epochs=1, seed=seed)
    ref = list(rsdb.RSDBLoader({"s": str(src)}, **kw))
    out = list(rsdb.RSDBLoader({"s": str(dst)}, **kw))
    assert len(out) == len(ref) and all(batches_equal(a, b) for a, b in zip(out, ref))


# ---- Megatron checksum sidecar -----------------------------------------------------------------


def test_megatron_sidecar_catches_bin_flips(tmp_path):
    docs = [[5, 6, 7], [8, 9], [10]]
    rsdb.write_megatron(tmp_path / "m", docs, dtype=np.uint16)
    side = tmp_path / "m.rsdb.json"
    assert json.loads(side.read_text())["bin_bytes"] == 12
    b = bytearray((tmp_path / "m.bin").read_bytes())
    b[2] ^= 1  # 6 -> 7: a valid id in a valid index
    (tmp_path / "m.bin").write_bytes(bytes(b))
    s = rsdb.open_megatron(tmp_path / "m")
    with pytest.raises(ShardError, match="xxh64 checksum mismatch") as exc:
        s[0]
    assert exc.value.path.endswith("m.bin")
    with pytest.raises(ShardError, match="checksum"):
        list(rsdb.RSDBLoader({"m": str(tmp_path / "m")}, seq_len=4, batch_size=1, epochs=1))
    assert rsdb.open_megatron(tmp_path / "m", verify="off")[0].tolist() == [5, 7, 7]


def test_megatron_sidecar_recorded_on_first_open(tmp_path):
    rsdb.write_megatron(tmp_path / "m", [[1, 2], [3]], dtype=np.int32)
    side = tmp_path / "m.rsdb.json"
    side.unlink()
    s = rsdb.open_megatron(tmp_path / "m")
    assert s[0].tolist() == [1, 2]  # waits for the first-open checksum, which records the sidecar
    assert side.is_file()
    b = bytearray((tmp_path / "m.bin").read_bytes())
    b[0] ^= 4
    (tmp_path / "m.bin").write_bytes(bytes(b))
    with pytest.raises(ShardError, match="checksum mismatch"):
        rsdb.open_megatron(tmp_path / "m").tokens
    side.write_text('{"format": "rsdb-megatron-checksums", "version": 1, "bin_bytes": "12"}')
    with pytest.raises(ShardError, match="bin_bytes"):
        rsdb.open_megatron(tmp_path / "m")


def test_token_shards_pickle_without_their_maps_and_checks(tmp_path):
    import pickle

    docs = _corpus(tmp_path, n_docs=12, shard_tokens=100)
    s = rsdb.open_shards(tmp_path)
    s.view(0)
    t = pickle.loads(pickle.dumps(s))
    assert t.verify == "checksum" and not t._views and [d.tolist() for d in t] == docs


@pytest.mark.parametrize("name", ["../x.arrow", "a/../../x.arrow", "a/..", "/abs/x.arrow", "a\\b.arrow", ""])
def test_shard_file_outside_the_directory_is_refused(name):
    from pydantic import ValidationError

    from rsdb.manifest import ShardEntry

    with pytest.raises(ValidationError, match="relative path inside the shard directory"):
        ShardEntry(file=name, num_docs=1, num_tokens=1)


@pytest.mark.parametrize("name", ["x.arrow", "sub/x.arrow", "x..y.arrow", "./x.arrow"])
def test_shard_file_inside_the_directory_is_accepted(name):
    from rsdb.manifest import ShardEntry

    assert ShardEntry(file=name, num_docs=1, num_tokens=1).file == name
