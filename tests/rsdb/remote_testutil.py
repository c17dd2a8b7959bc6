"""Real object storage for the remote-shard tests and benchmark: moto's S3 server on
loopback, and a small HTTP proxy in front of it that adds per-request latency, a
bandwidth cap and injected 503s, and counts requests per object.

Nothing here mocks fsspec or s3fs: the loader talks HTTP to a real S3 implementation.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BUCKET = "tokens"
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class S3:
    """moto's ThreadedMotoServer on 127.0.0.1 (random port) with one bucket."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client.create_bucket(Bucket=BUCKET)

    def options(self, endpoint: str | None = None) -> dict:
        """fsspec storage_options for s3fs, against ``endpoint`` (default: moto itself)."""
        return {"key": "testing", "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint or self.endpoint, "region_name": "us-east-1"}}

    def upload_dir(self, local: str | os.PathLike, prefix: str) -> str:
        """Copy a local shard directory to ``s3://tokens/<prefix>``; return that URI."""
        for p in sorted(Path(local).iterdir()):
            if p.is_file() and not p.name.startswith("."):
                self.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{p.name}", Body=p.read_bytes())
        return f"s3://{BUCKET}/{prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=key)

    def stop(self) -> None:
        self.server.stop()


class Proxy:
    """A loopback HTTP proxy to ``upstream`` with latency, bandwidth cap and faults.

    Args:
        upstream: ``http://host:port`` of the real server.
        latency_s: added before every response (first byte), per request.
        bandwidth: bytes/s cap of each response body (None: no cap).
    ``fail_next(n)`` answers the next ``n`` GETs with 503; ``counts`` maps a request
    path to its number of GETs; ``stop()`` closes the listening socket and every
    connection, like a store that went away.
    """

    def __init__(self, upstream: str, latency_s: float = 0.0, bandwidth: float | None = None):
        u = urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port
        self.latency_s = latency_s
        self.bandwidth = bandwidth
        self.counts: Counter[str] = Counter()
        self._fail = 0
        self._lock = threading.Lock()
        self._conns: list = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real store

            def log_message(self, *args):  # quiet
                pass

            def _relay(self) -> None:
                proxy._track(self.connection)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                with proxy._lock:
                    if self.command == "GET":
                        proxy.counts[path] += 1
                    fail = proxy._fail > 0 and self.command == "GET"
                    if fail:
                        proxy._fail -= 1
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                if fail:
                    msg = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(proxy.up_host, proxy.up_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if proxy.bandwidth:
                    step = max(1, int(proxy.bandwidth // 50))  # 20 ms slices
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i : i + step])
                        time.sleep(len(data[i : i + step]) / proxy.bandwidth)
                else:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _track(self, sock) -> None:
        with self._lock:
            if sock not in self._conns:
                self._conns.append(sock)

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._fail = n

    def gets(self, suffix: str) -> int:
        """GETs of paths ending in ``suffix``."""
        with self._lock:
            return sum(c for p, c in self.counts.items() if p.endswith(suffix))

    def stop(self) -> None:
        import socket

        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _sum_sizes(root: str | os.PathLike, keep=lambda name: True) -> int:
    """Bytes of the files under ``root`` whose name ``keep`` accepts, each inode counted once.

    A directory listing taken while a ``.part`` is renamed into place may hold both names of
    the one file (POSIX allows it); counting both would report bytes that never were on disk.
    """
    sizes: dict[tuple[int, int], int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if not keep(name):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            sizes[(st.st_dev, st.st_ino)] = st.st_size
    return sum(sizes.values())


def dir_bytes(root: str | os.PathLike) -> int:
    """Bytes of every regular file under ``root`` (finished shards and partial downloads)."""
    return _sum_sizes(root)


def cache_bytes(root: str | os.PathLike) -> int:
    """Bytes that ``max_cache_bytes`` bounds under ``root``: finished shards and partial downloads.

    Leaves out the cache's bookkeeping: one empty ``.lock`` per shard and the cache, and
    the running total ``.usage`` (a decimal number) with its ``.tmp`` while it is rewritten.
    """
    if not os.path.isdir(root):
        return 0
    return _sum_sizes(root, lambda name: not (name.endswith((".lock", ".tmp")) or name == ".usage"))
