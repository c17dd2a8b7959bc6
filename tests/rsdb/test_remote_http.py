"""RSDB over a plain HTTP store (fsspec's http filesystem, aiohttp) on loopback: batches
bit-identical to local files, and a store that stalls, or trickles its bytes, gives a
clear ShardError within the configured timeout instead of a hang.

The server is real (http.server on 127.0.0.1, a random port) and honours Range requests
as object stores do; nothing in fsspec or aiohttp is mocked.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from rsdb_testutil import make_corpus

import rsdb
from rsdb.errors import ShardError

pytest.importorskip("aiohttp")

KW = {"seq_len": 64, "batch_size": 2, "buffer_docs": 4, "seed": 2, "epochs": 1}


class Store:
    """Serves ``root`` over HTTP with Range support; ``mode`` "ok", "stall" or "trickle"
    applies to shard files (manifests are always answered at once)."""

    def __init__(self, root: Path):
        self.root, self.mode, self.released = root, "ok", threading.Event()
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # one line per request otherwise
                pass

            def do_GET(self) -> None:
                path = store.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                status, m = 200, re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if m:
                    start, end = int(m.group(1)), int(m.group(2) or len(data) - 1)
                    data, status = data[start:end + 1], 206
                shard = path.name != "manifest.json"
                if shard and store.mode == "stall":
                    store.released.wait(60)  # accepts the request, never answers it
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if shard and store.mode == "trickle":  # a byte every 0.2 s: no read ever waits 1 s
                    for i in range(len(data)):
                        if store.released.wait(0.2):
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    return
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def served(tmp_path):
    paths, _docs = make_corpus(tmp_path / "corpus", {"web": [90, 40, 150, 60] * 5}, shard_tokens=400)
    store = Store(tmp_path / "corpus")
    yield paths, store
    store.stop()


def test_http_batches_bit_identical_to_local(served, tmp_path):
    paths, store = served
    ref = [b["tokens"].copy() for b in rsdb.RSDBLoader(paths, **KW)]
    loader = rsdb.RSDBLoader({"web": f"{store.url}/web"}, cache_dir=tmp_path / "cache", **KW)
    got = [b["tokens"].copy() for b in loader]
    assert len(got) == len(ref) > 3 and all(np.array_equal(a, b) for a, b in zip(ref, got))
    assert loader.stats()["remote"]["fetched_shards"] == len(rsdb.open_shards(paths["web"]).shards)


@pytest.mark.parametrize("mode", ["stall", "trickle"])
def test_stalled_http_store_fails_clearly_within_the_timeout(mode, served, tmp_path):
    """stall: aiohttp's read timeout; trickle (bytes keep coming, slower than a shard
    needs): the per-request watchdog. Either way a ShardError naming the object."""
    _paths, store = served
    store.mode = mode
    remote = {"timeout_s": 1.0, "retries": 1, "backoff_s": 0.05, "prefetch_shards": 0}
    t0 = time.monotonic()
    with pytest.raises(ShardError, match=r"shard-\d+\.arrow.*after 2 attempts.*timeout_s=1") as info:
        loader = rsdb.RSDBLoader({"web": f"{store.url}/web"}, cache_dir=tmp_path / "cache", remote=remote, **KW)
        next(loader)
    took = time.monotonic() - t0
    assert took < 2 * 1.0 + 1.5, took  # (retries + 1) x timeout_s, the backoff and start-up
    assert str(info.value).startswith(f"{store.url}/web/shard-")
