"""Input files whose codec lies, damaged compressed files, and units that read only their own bytes.

Run: .venv/bin/python -m pytest tests/pipeline/test_codecs.py -q
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline._codecs import DamagedStream, decoded_chunks, sniff
from pipeline.config import InputConfig, parse_config
from pipeline.read import BadInputFile, plan_units

from pipeline_testutil import read_all

COMPRESS = {
    "gz": gzip.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


def lines(n: int, tag: str = "d") -> list[bytes]:
    return [json.dumps({"id": f"{tag}{i:04d}", "text": f"document {i} " * 20}).encode() + b"\n" for i in range(n)]


def members(codec: str, data: list[bytes], parts: int) -> bytes:
    """``data`` compressed as ``parts`` concatenated members/frames (every codec here allows that)."""
    if not data:
        return COMPRESS[codec](b"")  # an empty document set is still a valid compressed file
    step = max(1, len(data) // parts)
    return b"".join(COMPRESS[codec](b"".join(data[i:i + step])) for i in range(0, len(data), step))


PLAIN = b"".join(lines(5))
LIARS = [
    ("docs.jsonl.zst", PLAIN, r"expected zstd data \(the name ends in \.zst\) but it is plain text"),
    ("docs.jsonl.zst", gzip.compress(PLAIN), r"expected zstd data .* but it is gzip data"),
    ("docs.jsonl.zst", b"", r"empty, expected zstd data"),
    ("docs.jsonl.gz", COMPRESS["zst"](PLAIN), r"expected gzip data \(the name ends in \.gz\) but it is zstd data"),
    ("docs.jsonl.bz2", PLAIN, r"expected bz2 data .* but it is plain text"),
    ("docs.jsonl.xz", gzip.compress(PLAIN), r"expected xz data .* but it is gzip data"),
    ("docs.jsonl", gzip.compress(PLAIN), r"it is gzip-compressed but its name has no \.gz suffix"),
    ("docs.parquet", PLAIN, r"not a Parquet file \(no PAR1 magic at its start; it is plain text\)"),
]


@pytest.mark.parametrize("name, data, reason", LIARS, ids=[f"{n}:{r[:20]}" for n, _, r in LIARS])
def test_a_file_whose_bytes_contradict_its_name(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    good = tmp_path / "good.jsonl"
    good.write_bytes(PLAIN)
    # Default: a clear error naming the file and what was expected, before any work starts.
    with pytest.raises(BadInputFile, match=re.escape(str(path)) + ": bad_file: " + reason):
        plan_units(InputConfig(paths=[str(good), str(path)]))
    # on_bad_file: reject: the file becomes one rejected row with that reason; the rest is read.
    kept, rejected = read_all(InputConfig(paths=[str(good), str(path)], on_bad_file="reject"))
    assert kept.num_rows == 5 and rejected.num_rows == 1
    row = rejected.to_pylist()[0]
    assert row["source_file"] == str(path) and row["reject_stage"] == "read"
    assert re.match("bad_file: " + reason, row["reject_reason"])


def test_parquet_cut_short_is_named(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "id": ["1", "2"]}), path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BadInputFile, match=r"t\.parquet: bad_file: not a Parquet file \(no PAR1 magic at its end"):
        plan_units(InputConfig(paths=[str(path)]))


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_truncated_file_keeps_the_lines_before_the_damage(tmp_path, codec):
    data = lines(50)
    blob = members(codec, data, parts=5)  # damage in the last member: 40 lines decode before it
    cut = len(blob) - 25
    path = tmp_path / f"docs.jsonl.{codec}"
    path.write_bytes(blob[:cut])
    with pytest.raises(BadInputFile, match=re.escape(str(path)) + rf": truncated_or_damaged: .* offset {cut:,}"):
        plan_units(InputConfig(paths=[str(path)], unit_rows=7))
    kept, rejected = read_all(InputConfig(paths=[str(path)], unit_rows=7, on_bad_file="reject"))
    ids = kept.column("id").to_pylist()
    assert 40 <= len(ids) <= 50 and ids == [f"d{i:04d}" for i in range(len(ids))]  # xz: the cut may hit only its index
    (row,) = rejected.to_pylist()
    assert row["source_file"] == str(path) and row["source_line"] == len(ids) + 1
    assert f"compressed byte offset {cut:,}" in row["reject_reason"]
    assert f"{len(ids):,} complete lines before it were kept" in row["reject_reason"]


def test_garbage_after_a_good_member_is_damage_at_its_offset(tmp_path):
    good = gzip.compress(PLAIN)
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(good + b"this is not gzip at all")
    kept, rejected = read_all(InputConfig(paths=[str(path)], on_bad_file="reject"))
    assert kept.num_rows == 5
    assert f"at compressed byte offset {len(good):,}" in rejected.column("reject_reason")[0].as_py()


def test_decoded_chunks_raise_after_yielding_every_good_byte():
    data = b"".join(lines(30))
    blob = zstandard.ZstdCompressor().compress(data)
    import io

    got = bytearray()
    with pytest.raises(DamagedStream) as info:
        for chunk in decoded_chunks(io.BytesIO(blob[: len(blob) // 2]), "zstd", chunk=64):
            got += chunk
    assert data.startswith(bytes(got)) and info.value.offset == len(blob) // 2 and info.value.decoded == len(got)
    assert sniff(blob[:4]) == "zstd" and sniff("é".encode()[:1]) == "text"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 60), unit_rows=st.integers(1, 13), codec=st.sampled_from([None, *sorted(COMPRESS)]),
       parts=st.integers(1, 6), trailing_newline=st.booleans())
def test_units_read_exactly_their_own_lines(tmp_path_factory, n, unit_rows, codec, parts, trailing_newline):
    """Seeking to a unit's member/frame and offset gives the same rows as reading the file through."""
    data = lines(n)
    if data and not trailing_newline:
        data[-1] = data[-1].rstrip(b"\n")
    path = tmp_path_factory.mktemp("u") / ("docs.jsonl" + (f".{codec}" if codec else ""))
    path.write_bytes(members(codec, data, parts) if codec else b"".join(data))
    cfg = InputConfig(paths=[str(path)], unit_rows=unit_rows)
    units = plan_units(cfg)
    assert [u.stop - u.start for u in units] == [min(unit_rows, n - s) for s in range(0, n, unit_rows)]
    if not n:
        return
    kept, rejected = read_all(cfg)
    assert rejected.num_rows == 0
    assert kept.column("id").to_pylist() == [f"d{i:04d}" for i in range(n)]
    assert kept.column("source_line").to_pylist() == list(range(1, n + 1))
    if codec and parts > 1 and n >= 2 * unit_rows:
        assert any(u.seek > 0 for u in units)  # later units do not decode from the start


def test_on_bad_file_is_validated():
    with pytest.raises(Exception, match="on_bad_file"):
        parse_config({"input": {"paths": ["x"], "on_bad_file": "ignore"}, "output": {"path": "o"}})


def test_run_rejects_a_bad_file_into_rejected_and_accounts_for_it(tmp_path, ray_cluster):
    from pipeline.runner import run_pipeline

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(PLAIN)
    (tmp_path / "in" / "b.jsonl.zst").write_bytes(PLAIN)  # a lie
    blob = members("gz", lines(20, "c"), parts=4)
    (tmp_path / "in" / "c.jsonl.gz").write_bytes(blob[:-10])  # truncated
    base = {"input": {"paths": [str(tmp_path / "in")], "unit_rows": 4}, "stages": ["normalize"],
            "ray": {"workers": 2}, "progress": False}
    with pytest.raises(BadInputFile, match="b.jsonl.zst: bad_file: expected zstd"):
        run_pipeline(parse_config({**base, "output": {"path": str(tmp_path / "stop")}}))
    assert not (tmp_path / "stop.curation" / "_work" / "map0").exists()  # refused before any work
    base["input"]["on_bad_file"] = "reject"
    m = run_pipeline(parse_config({**base, "output": {"path": str(tmp_path / "out")}})).manifest
    assert m["accounting"]["ok"]
    rej = pq.read_table(sorted((tmp_path / "out.curation").glob("**/rejected/*.parquet"))).to_pylist()
    reasons = {r["source_file"].rsplit("/", 1)[-1]: r["reject_reason"] for r in rej}
    assert reasons["b.jsonl.zst"].startswith("bad_file: expected zstd data")
    assert reasons["c.jsonl.gz"].startswith("truncated_or_damaged: the gzip stream ends mid-stream")
    kept_c = int(re.search(r"; (\d+) complete lines", reasons["c.jsonl.gz"]).group(1))
    assert 15 <= kept_c < 20 and m["rows"] == 5 + kept_c and m["rejected"]["rows"] == 2
