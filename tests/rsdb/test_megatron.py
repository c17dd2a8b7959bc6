"""Megatron-LM/NeMo indexed datasets: round trip, validation, fuzzed corruption.

Run: .venv/bin/python -m pytest tests/rsdb/test_megatron.py -q
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsdb.errors import ConfigError, ShardError
from rsdb.megatron import MAGIC, open_megatron, write_megatron

HEADER = 34  # magic 9 + version 8 + dtype 1 + n_seq 8 + n_doc_idx 8


def _docs(rng, n=20, vocab=50_000):
    return [rng.integers(0, vocab, size=int(rng.integers(0, 300))) for _ in range(n)]


def _write_raw_megatron(prefix, seqs, doc_index, code=8, dtype=np.uint16):
    """An independent writer straight from the format description (for grouped docs)."""
    sizes = np.array([len(s) for s in seqs], dtype="<i4")
    ptr = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("<i8") * np.dtype(dtype).itemsize
    with open(f"{prefix}.bin", "wb") as f:
        for s in seqs:
            f.write(np.asarray(s, dtype=dtype).tobytes())
    with open(f"{prefix}.idx", "wb") as f:
        f.write(MAGIC + struct.pack("<QBQQ", 1, code, len(seqs), len(doc_index)))
        f.write(sizes.tobytes() + ptr[: len(seqs)].tobytes() + np.asarray(doc_index, "<i8").tobytes())


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    docs = _docs(rng)
    info = write_megatron(tmp_path / "ds", docs, dtype=dtype)
    assert info["num_docs"] == len(docs)
    assert info["num_tokens"] == sum(len(d) for d in docs)
    s = open_megatron(tmp_path / "ds")
    assert s.tokens.dtype == np.dtype(dtype)
    assert s.offsets.dtype == np.int64 and s.offsets.shape == (len(docs) + 1,)
    assert s.offsets[0] == 0 and np.all(np.diff(s.offsets) >= 0)
    assert s.num_docs == len(docs) and s.num_tokens == info["num_tokens"]
    assert s.path == str(tmp_path / "ds")
    assert isinstance(s.tokens, np.memmap)  # zero copy: the .bin file itself
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(s[i], d)
        np.testing.assert_array_equal(s.tokens[s.offsets[i] : s.offsets[i + 1]], d)
    # .bin/.idx suffixes are accepted as the prefix
    assert open_megatron(f"{tmp_path}/ds.idx").num_docs == len(docs)


def test_empty_dataset(tmp_path):
    write_megatron(tmp_path / "e", [], dtype=np.uint16)
    s = open_megatron(tmp_path / "e")
    assert s.num_docs == 0 and s.num_tokens == 0 and s.offsets.tolist() == [0]


def test_byte_layout_matches_spec(tmp_path):
    """The header and arrays are exactly where the MMIDIDX description puts them."""
    write_megatron(tmp_path / "x", [[1, 2, 3], [4]], dtype=np.int32)
    raw = (tmp_path / "x.idx").read_bytes()
    magic, version, code, n_seq, n_doc = struct.unpack("<9sQBQQ", raw[:HEADER])
    assert (magic, version, code, n_seq, n_doc) == (MAGIC, 1, 4, 2, 3)
    assert np.frombuffer(raw, "<i4", 2, HEADER).tolist() == [3, 1]
    assert np.frombuffer(raw, "<i8", 2, HEADER + 8).tolist() == [0, 12]
    assert np.frombuffer(raw, "<i8", 3, HEADER + 24).tolist() == [0, 1, 2]
    assert (tmp_path / "x.bin").read_bytes() == np.array([1, 2, 3, 4], "<i4").tobytes()


def test_grouped_documents(tmp_path):
    """Several sequences per document (BERT-style): a document spans its sequences."""
    seqs = [[1, 2], [3], [4, 5, 6], [7], [8, 9]]
    _write_raw_megatron(tmp_path / "g", seqs, doc_index=[0, 2, 3, 5])
    s = open_megatron(tmp_path / "g")
    assert s.num_docs == 3 and s.num_sequences == 5
    assert [s[i].tolist() for i in range(3)] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    # A repeated entry (an empty document) is what an edited index looks like: refused.
    _write_raw_megatron(tmp_path / "e", seqs, doc_index=[0, 2, 2, 5])
    with pytest.raises(ShardError, match="repeats at entry 2"):
        open_megatron(tmp_path / "e")


def test_multimodal_modes_tail_is_accepted(tmp_path):
    _write_raw_megatron(tmp_path / "m", [[1, 2], [3]], doc_index=[0, 1, 2])
    with open(tmp_path / "m.idx", "ab") as f:
        f.write(b"\x00\x00")  # one int8 mode per sequence
    assert open_megatron(tmp_path / "m").num_tokens == 3


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="document 1 has token ids outside uint16"):
        write_megatron(tmp_path / "w", [[1], [70_000]], dtype=np.uint16)
    with pytest.raises(ConfigError, match="dtype must be"):
        write_megatron(tmp_path / "w", [[1]], dtype=np.float32)
    with pytest.raises(ConfigError, match="document 0 must be a 1-D integer"):
        write_megatron(tmp_path / "w", [np.ones((2, 2), dtype=np.int64)], dtype=np.int32)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def _corrupt(tmp_path, mutate):
    write_megatron(tmp_path / "c", [[1, 2, 3], [4, 5], [6]], dtype=np.uint16)
    idx = bytearray((tmp_path / "c.idx").read_bytes())
    bin_ = bytearray((tmp_path / "c.bin").read_bytes())
    idx, bin_ = mutate(idx, bin_)
    (tmp_path / "c.idx").write_bytes(bytes(idx))
    (tmp_path / "c.bin").write_bytes(bytes(bin_))
    with pytest.raises(ShardError) as e:
        open_megatron(tmp_path / "c")
    return str(e.value)


def _set(buf, off, fmt, value):
    struct.pack_into(fmt, buf, off, value)
    return buf


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda i, b: (b"NOTMEGAT" + i[8:], b), "bad magic"),
        (lambda i, b: (_set(i, 9, "<Q", 2), b), "unsupported index version 2"),
        (lambda i, b: (_set(i, 17, "<B", 42), b), "unknown dtype code 42"),
        (lambda i, b: (_set(i, 17, "<B", 5), b), "int64 (code 5) is not supported"),
        (lambda i, b: (_set(i, 17, "<B", 6), b), "float64"),
        (lambda i, b: (_set(i, 18, "<Q", 4), b), "does not match its header"),
        (lambda i, b: (i[:-3], b), "does not match its header"),
        (lambda i, b: (i[:20], b), "shorter than the 34-byte header"),
        (lambda i, b: (i, b[:-2]), "c.bin: truncated"),
        (lambda i, b: (i, b + b"\0\0"), "longer than its index says"),
        (lambda i, b: (_set(i, HEADER + 4, "<i", 7), b), "pointers are inconsistent"),
        (lambda i, b: (_set(i, HEADER + 4, "<i", -1), b), "negative length"),
        (lambda i, b: (_set(i, HEADER + 12 + 8, "<q", 4), b), "sequence 1 starts at byte 4"),
        (lambda i, b: (_set(i, HEADER + 36 + 8, "<q", 3), b), "document index decreases"),
        (lambda i, b: (_set(i, HEADER + 36 + 24, "<q", 2), b), "end at the sequence count 3"),
    ],
)
def test_corrupt_index_is_named(tmp_path, mutate, needle):
    msg = _corrupt(tmp_path, mutate)
    assert needle in msg
    assert "c.idx" in msg or "c.bin" in msg


def test_missing_file(tmp_path):
    write_megatron(tmp_path / "m", [[1]], dtype=np.uint16)
    (tmp_path / "m.bin").unlink()
    with pytest.raises(ShardError, match=r"m\.bin: file not found"):
        open_megatron(tmp_path / "m")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_corruption_never_yields_wrong_tokens(tmp_path_factory, data):
    """Random byte flips or truncation: either a ShardError, or the exact same documents.

    (Flips inside the token payload are indistinguishable from valid data by design
    and are not part of this property; they only change token values, never bounds.)
    """
    tmp = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    docs = _docs(rng, n=data.draw(st.integers(0, 6)), vocab=60_000)
    dtype = data.draw(st.sampled_from([np.uint16, np.int32]))
    write_megatron(tmp / "f", docs, dtype=dtype)
    idx = bytearray((tmp / "f.idx").read_bytes())
    bin_ = bytearray((tmp / "f.bin").read_bytes())
    action = data.draw(st.sampled_from(["flip_idx", "truncate_idx", "truncate_bin", "extend_bin"]))
    if action == "flip_idx":
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(idx) - 1))
            idx[pos] ^= data.draw(st.integers(1, 255))
    elif action == "truncate_idx":
        idx = idx[: data.draw(st.integers(0, len(idx) - 1))]
    elif action == "truncate_bin":
        if not bin_:
            return
        bin_ = bin_[: data.draw(st.integers(0, len(bin_) - 1))]
    else:
        bin_ += bytes(data.draw(st.integers(1, 9)))
    (tmp / "f.idx").write_bytes(bytes(idx))
    (tmp / "f.bin").write_bytes(bytes(bin_))
    try:
        s = open_megatron(tmp / "f")
    except ShardError:
        return
    # Accepted: every document lies inside the token file and, read in order, they are
    # exactly the tokens written (a flip in the document index may regroup sequences
    # into a different but valid grouping; it can never invent or lose tokens).
    assert s.offsets[0] == 0 and np.all(np.diff(s.offsets) >= 0)
    assert s.offsets[-1] == s.tokens.shape[0]
    got = [s[i] for i in range(s.num_docs)]
    want = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if docs else np.zeros(0)
    have = np.concatenate([g.astype(np.int64) for g in got]) if got else np.zeros(0)
    np.testing.assert_array_equal(have, want)


def _docs_by_id(batches):
    """Reassemble documents from batches: tokens of each (source id, doc id), in stream order."""
    out: dict[tuple[int, int], list[int]] = {}
    for b in batches:
        m = b["loss_mask"]
        for tok, sid, did in zip(b["tokens"][m].tolist(), b["source_ids"][m].tolist(), b["doc_ids"][m].tolist()):
            out.setdefault((sid, did), []).append(tok)
    return out


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_loader_streams_megatron_prefix_exactly_once(tmp_path, dtype):
    import rsdb

    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 60_000, size=int(n)) for n in rng.integers(1, 90, size=40)]
    docs.append(rng.integers(0, 60_000, size=700))  # longer than a sequence
    write_megatron(tmp_path / "meg", docs, dtype=dtype)
    loader = rsdb.RSDBLoader({"meg": str(tmp_path / "meg")}, seq_len=64, batch_size=3, buffer_docs=8,
                             epochs=1, seed=5)
    batches = [{k: v.copy() for k, v in b.items()} for b in loader]
    assert batches and all(b["tokens"].shape == (3, 65) for b in batches)
    got = sorted(tuple(d) for d in _docs_by_id(batches).values())
    assert got == sorted(tuple(int(t) for t in d) for d in docs)


def test_loader_mixes_megatron_and_arrow_sources(tmp_path):
    import rsdb

    meg_docs = [np.arange(10, 10 + n) for n in (5, 17, 30)]
    arrow_docs = [np.arange(1000, 1000 + n) for n in (9, 2, 40)]
    write_megatron(tmp_path / "meg", meg_docs, dtype=np.int32)
    rsdb.write_shards(tmp_path / "arr", arrow_docs, source="arr")
    loader = rsdb.RSDBLoader({"meg": str(tmp_path / "meg"), "arr": str(tmp_path / "arr")},
                             seq_len=16, batch_size=2, buffer_docs=4, epochs=1)
    batches = [{k: v.copy() for k, v in b.items()} for b in loader]
    got = sorted(tuple(d) for d in _docs_by_id(batches).values())
    assert got == sorted(tuple(int(t) for t in d) for d in meg_docs + arrow_docs)
    names = loader.source_names
    for b in batches:  # every token's source id names the source it came from
        m = b["loss_mask"]
        src = np.asarray(names)[b["source_ids"][m]]
        assert np.all((src == "meg") == (b["tokens"][m] < 1000))


def test_loader_reports_corrupt_megatron_prefix(tmp_path):
    import rsdb

    write_megatron(tmp_path / "bad", [[1, 2, 3]], dtype=np.uint16)
    with open(tmp_path / "bad.bin", "r+b") as f:
        f.truncate(2)
    with pytest.raises(ShardError, match=r"bad\.bin: truncated"):
        loader = rsdb.RSDBLoader({"meg": str(tmp_path / "bad")}, seq_len=4, batch_size=1, epochs=1)
        next(iter(loader))
