"""A loader in a process of its own, for the multi-process cache tests.

``python remote_child.py ARGS.json`` builds ``rsdb.RSDBLoader(**ARGS["loader"])`` over
``ARGS["sources"]``, writes every batch's tokens to ``ARGS["out"]`` (.npy) and prints
``stats()["remote"]`` as one JSON line.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import rsdb


def main(path: str) -> None:
    args = json.loads(open(path).read())
    loader = rsdb.RSDBLoader(args["sources"], **args["loader"])
    tokens = np.stack([b["tokens"].copy() for b in loader])
    np.save(args["out"], tokens)
    print(json.dumps(loader.stats()["remote"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
