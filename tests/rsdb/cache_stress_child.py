"""A :class:`rsdb.cache.ShardCache` workload in a process of its own, for the bound tests.

``python cache_stress_child.py ROOT BOUND FILES SECONDS SEED`` runs three threads that
each, until SECONDS have passed, need a random one of FILES small files (fetching it
when absent), hold it pinned for a moment and let it go. Prints ``fetched=N full=M``.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

from rsdb.cache import CacheFull, ShardCache


def size_of(k: int) -> int:
    return 1000 + 97 * (k % 7)  # sizes differ, so a miscount shows as a byte total no file set has


def fill_for(size: int):
    def fill(part: Path) -> None:
        with open(part, "wb") as f:
            for _ in range(4):  # a download in a few chunks, like a ranged read
                f.write(b"t" * (size // 4))
                time.sleep(0)
            f.write(b"t" * (size - 4 * (size // 4)))
    return fill


def work(cache: ShardCache, files: int, until: float, rng: random.Random, counts: dict) -> None:
    while time.monotonic() < until:
        k = rng.randrange(files)
        path = cache.root / "src" / f"s{k:03d}.arrow"
        try:
            pin, fetched = cache.materialize(path, size_of(k), fill_for(size_of(k)), path.name)
        except CacheFull:
            counts["full"] += 1
            time.sleep(0.001)
            continue
        counts["fetched"] += fetched
        time.sleep(rng.random() * 0.002)
        pin.release()


def main(root: str, bound: str, files: str, seconds: str, seed: str) -> None:
    cache = ShardCache(root, max_cache_bytes=int(bound), lock_timeout_s=30)
    until = time.monotonic() + float(seconds)
    counts = {"fetched": 0, "full": 0}
    threads = [threading.Thread(target=work, args=(cache, int(files), until, random.Random(int(seed) * 10 + t), counts))
               for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"fetched={counts['fetched']} full={counts['full']}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
