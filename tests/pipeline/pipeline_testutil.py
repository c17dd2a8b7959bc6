"""Helpers shared by the curation tests (imported by name: test modules here are not a package)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pyarrow as pa

from pipeline.config import InputConfig
from pipeline.read import plan_units, read_unit


def read_all(cfg: InputConfig) -> tuple[pa.Table, pa.Table]:
    """Every planned unit read in order: (kept rows, rejected rows)."""
    kept, rejected = [], []
    for unit in plan_units(cfg):
        k, r = read_unit(unit, cfg)
        kept.append(k)
        rejected.append(r)
    return (pa.concat_tables(kept, promote_options="permissive"),
            pa.concat_tables(rejected, promote_options="permissive"))


@contextlib.contextmanager
def moto_bucket(bucket: str) -> Iterator[dict]:
    """moto's S3 server on 127.0.0.1 (random port) with ``bucket`` created; yields s3fs storage options."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        yield {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    finally:
        server.stop()
