"""Mutation fuzzing of RSDB token shards and Megatron datasets: never wrong tokens silently.

Builds a small pristine corpus (an Arrow shard directory of 3 shards and a Megatron
``.bin``/``.idx`` pair with its checksum sidecar), records the exact output of reading
it (every document through ``open_shards``/``open_megatron`` plus one epoch of
``RSDBLoader`` batches), then applies seeded mutations, one per case, and reads each
mutated copy with the default settings in a worker subprocess. Each case ends in one
outcome:

    shard_error   rsdb.ShardError (the wanted answer for a corrupt input)
    exact         read without error and output identical to the pristine one (a
                  mutation that changes nothing the reader uses, e.g. reformatted JSON)
    silent_wrong  read without error but output differs: the bug this script hunts
    other_error   any other exception (a TypeError where a ShardError belongs)
    crash         the worker process died (signal or abnormal exit)
    hang          no answer within --case-timeout seconds

Cases run in batched worker processes (one process reads many cases, reporting each as
it ends), so a crash or hang costs only its own case: the parent notes it and starts a
new worker at the next case. Prints one JSON line per mutation class and a summary; the
exit status is 1 unless every case ended in shard_error or exact.

    .venv/bin/python benchmarks/fuzz_shards.py --arrow 1000 --megatron 500 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

OUTCOMES = ("shard_error", "exact", "silent_wrong", "other_error", "crash", "hang")
VOCAB = 1000
LOADER_KW = dict(seq_len=64, batch_size=2, buffer_docs=4, epochs=1, seed=3)

# ---------------------------------------------------------------------------- pristine data


def build_pristine(root: Path) -> None:
    """Arrow shards under ``root/arrow`` (3 files) and a Megatron set ``root/mega``."""
    import rsdb

    rng = np.random.default_rng(12345)
    lengths = rng.integers(1, 120, size=60)
    docs = [rng.integers(0, VOCAB, size=int(n)).astype(np.uint32) for n in lengths]
    rsdb.write_shards(root / "arrow", docs, source="web", shard_tokens=1200, vocab_size=VOCAB, tokenizer="t")
    mdocs = [rng.integers(0, VOCAB, size=int(n)).astype(np.uint16) for n in rng.integers(1, 80, size=40)]
    rsdb.write_megatron(root / "mega", mdocs, dtype=np.uint16)
    # The legal-but-unusual variant: a shard whose list offsets start above 0.
    shutil.copytree(root / "arrow", root / "arrow_offset")
    make_offset_shard(root / "arrow_offset", 0, pad=7)


def make_offset_shard(d: Path, shard: int, pad: int) -> None:
    """Rewrite shard ``shard`` so its first list offset is ``pad`` (values before it unused); re-seal."""
    import pyarrow as pa

    import rsdb
    from rsdb.manifest import dump_manifest
    from rsdb.shards import _xxh64_file

    m = json.loads((d / "manifest.json").read_text())
    info = m["shards"][shard]
    path = d / info["file"]
    s = rsdb.open_shards(d, verify="off").view(shard)
    docs = [s[i].copy() for i in range(s.num_docs)]
    ids = s.doc_ids()
    # Write the first document with `pad` extra tokens in front, then move offsets[0] up
    # by `pad`: the file then holds the same documents with offsets starting at `pad`.
    first = np.concatenate([np.full(pad, 1, np.uint32), docs[0]])
    tmp = d / "tmp"
    rsdb.write_shards(tmp, [first, *docs[1:]], doc_ids=ids, shard_tokens=10**9)
    blob = bytearray((tmp / "shard-00000.arrow").read_bytes())
    shutil.rmtree(tmp)
    buf = pa.py_buffer(bytes(blob))
    col = pa.ipc.open_file(buf).get_batch(0).column("tokens")
    pos = col.buffers()[1].address - buf.address
    assert int(np.frombuffer(blob, np.int64, count=1, offset=pos)[0]) == 0
    blob[pos : pos + 8] = np.int64(pad).tobytes()
    path.write_bytes(bytes(blob))
    info.update(bytes=len(blob), xxh64=_xxh64_file(path))
    dump_manifest(d, m)


# ---------------------------------------------------------------------------- reading


def read_output(kind: str, path: Path, verify: str = "checksum") -> str:
    """Digest of everything a user can read from the dataset (default: the default settings)."""
    import xxhash

    import rsdb

    h = xxhash.xxh64()
    if kind == "arrow":
        docs = rsdb.open_shards(path, verify=verify)
    else:
        docs = rsdb.open_megatron(path, verify=verify)
    for i in range(len(docs)):
        t = np.asarray(docs[i], dtype=np.int64)
        h.update(np.int64(t.size).tobytes())
        h.update(t.tobytes())
    h.update(b"|loader|")
    for b in rsdb.RSDBLoader({"s": str(path)}, verify=verify, **LOADER_KW):
        for k in ("tokens", "doc_ids", "loss_mask", "position_ids"):
            h.update(np.ascontiguousarray(b[k]).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- mutations


def _flip(data: bytearray, rng: random.Random, max_flips: int = 4) -> bytearray:
    for _ in range(rng.randint(1, max_flips)):
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    return data


def _bad_value(rng: random.Random):
    return rng.choice([None, "12", 1.5, [], {}, True, -1, 2**70, "x"])


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m, indent=2))


def _retotal(m: dict) -> None:
    """Keep the totals consistent with the edited shard list (so only the digest can tell)."""
    m["num_docs"] = sum(s["num_docs"] for s in m["shards"])
    m["num_tokens"] = sum(s["num_tokens"] for s in m["shards"])
    m["tokens_per_source"] = {m["source"]: m["num_tokens"]}


def arrow_mutations():
    """name -> f(dir, rng): mutate a copy of the Arrow shard directory in place."""

    def shard_file(d, rng):
        return d / rng.choice(_manifest(d)["shards"])["file"]

    def shard_flip(d, rng):
        f = shard_file(d, rng)
        f.write_bytes(bytes(_flip(bytearray(f.read_bytes()), rng)))

    def shard_truncate(d, rng):
        f = shard_file(d, rng)
        b = f.read_bytes()
        f.write_bytes(b[: rng.randrange(len(b))])

    def shard_extend(d, rng):
        f = shard_file(d, rng)
        f.write_bytes(f.read_bytes() + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))

    def shard_swap_files(d, rng):
        a, b = rng.sample(_manifest(d)["shards"], 2)
        pa_, pb = d / a["file"], d / b["file"]
        tmp = d / "swap.tmp"
        os.replace(pa_, tmp)
        os.replace(pb, pa_)
        os.replace(tmp, pb)

    def shard_missing(d, rng):
        shard_file(d, rng).unlink()

    def manifest_duplicate(d, rng):
        m = _manifest(d)
        m["shards"].insert(rng.randrange(len(m["shards"]) + 1), dict(rng.choice(m["shards"])))
        _retotal(m)
        _write_manifest(d, m)

    def manifest_duplicate_resealed(d, rng):
        from rsdb.manifest import manifest_digest

        m = _manifest(d)
        m["shards"].append(dict(rng.choice(m["shards"])))
        _retotal(m)
        m["digest"] = manifest_digest(m)  # a writer that seals a bad list: the duplicate check still refuses
        _write_manifest(d, m)

    def manifest_remove(d, rng):
        m = _manifest(d)
        m["shards"].pop(rng.randrange(len(m["shards"])))
        _retotal(m)
        _write_manifest(d, m)

    def manifest_swap(d, rng):
        m = _manifest(d)
        i, j = rng.sample(range(len(m["shards"])), 2)
        m["shards"][i], m["shards"][j] = m["shards"][j], m["shards"][i]
        _write_manifest(d, m)

    def manifest_value(d, rng):
        m = _manifest(d)
        if rng.random() < 0.5:
            key = rng.choice(["num_docs", "num_tokens", "vocab_size"])
            m[key] = max(1, m[key] + rng.choice([-2, -1, 1, 2, 100]))
        else:
            s = rng.choice(m["shards"])
            key = rng.choice(["num_docs", "num_tokens", "bytes", "xxh64", "file"])
            if key == "xxh64":
                s[key] = f"{rng.getrandbits(64):016x}"
            elif key == "file":
                s[key] = rng.choice([x["file"] for x in m["shards"] if x is not s] + ["other.arrow", "./" + s["file"]])
            else:
                s[key] = max(0, s[key] + rng.choice([-2, -1, 1, 2]))
        _write_manifest(d, m)

    def manifest_type(d, rng):
        m = _manifest(d)
        if rng.random() < 0.5:
            m[rng.choice(["num_docs", "num_tokens", "vocab_size", "source", "shards", "format_version",
                          "tokens_per_source", "digest"])] = _bad_value(rng)
        else:
            rng.choice(m["shards"])[rng.choice(["num_docs", "num_tokens", "bytes", "xxh64", "file"])] = _bad_value(rng)
        _write_manifest(d, m)

    def manifest_delete_key(d, rng):
        m = _manifest(d)
        if rng.random() < 0.5:
            m.pop(rng.choice(sorted(m)))
        else:
            s = rng.choice(m["shards"])
            s.pop(rng.choice(sorted(s)))
        _write_manifest(d, m)

    def manifest_text_flip(d, rng):
        f = d / "manifest.json"
        f.write_bytes(bytes(_flip(bytearray(f.read_bytes()), rng, 2)))

    def manifest_truncate(d, rng):
        f = d / "manifest.json"
        b = f.read_bytes()
        f.write_bytes(b[: rng.randrange(len(b))])

    def manifest_reformat(d, rng):  # same content, other layout: must read exactly as before
        m = _manifest(d)
        keys = list(m)
        rng.shuffle(keys)
        (d / "manifest.json").write_text(json.dumps({k: m[k] for k in keys}, indent=rng.choice([None, 1, 4])))

    return {k: v for k, v in locals().items() if callable(v) and k not in ("shard_file",)}


def megatron_mutations():
    """name -> f(prefix, rng): mutate a copy of the Megatron set in place."""
    from rsdb.megatron import _HEADER

    H = _HEADER.size

    def files(p):
        return Path(str(p) + ".bin"), Path(str(p) + ".idx"), Path(str(p) + ".rsdb.json")

    def layout(idx: bytes):
        n = int(np.frombuffer(idx, "<u8", count=1, offset=18)[0])
        return n, H, H + 4 * n, H + 12 * n  # n_seq, sizes, pointers, doc index offsets

    def no_sidecar(p):
        files(p)[2].unlink()

    def bin_flip(p, rng):
        f = files(p)[0]
        f.write_bytes(bytes(_flip(bytearray(f.read_bytes()), rng)))

    def idx_flip(p, rng):
        f = files(p)[1]
        f.write_bytes(bytes(_flip(bytearray(f.read_bytes()), rng)))

    def idx_flip_no_sidecar(p, rng):
        no_sidecar(p)
        idx_flip(p, rng)

    def _edit_idx(p, rng, fn, sidecar: bool):
        if not sidecar:
            no_sidecar(p)
        f = files(p)[1]
        idx = bytearray(f.read_bytes())
        n, so, po, do = layout(bytes(idx))
        sizes = np.frombuffer(idx, "<i4", count=n, offset=so).copy()
        ptrs = np.frombuffer(idx, "<i8", count=n, offset=po).copy()
        dix = np.frombuffer(idx, "<i8", count=n + 1, offset=do).copy()
        sizes, ptrs, dix = fn(sizes, ptrs, dix, rng)
        idx[so : so + 4 * n] = sizes.astype("<i4").tobytes()
        idx[po : po + 8 * n] = ptrs.astype("<i8").tobytes()
        idx[do : do + 8 * (n + 1)] = dix.astype("<i8").tobytes()
        f.write_bytes(bytes(idx))

    def _two_different(sizes, rng):
        while True:
            i, j = rng.sample(range(len(sizes)), 2)
            if sizes[i] != sizes[j]:
                return i, j

    def sizes_swap(p, rng):  # total kept, pointers left stale: the index checks must refuse
        def fn(s, ptr, dix, rng):
            i, j = _two_different(s, rng)
            s[i], s[j] = s[j], s[i]
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=False)

    def sizes_shift(p, rng):
        def fn(s, ptr, dix, rng):
            i = rng.randrange(len(s) - 1)
            k = rng.randint(1, max(1, int(s[i + 1])))
            s[i] += k
            s[i + 1] -= k
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=False)

    def doc_index_repeat(p, rng):
        def fn(s, ptr, dix, rng):
            i = rng.randrange(1, len(dix) - 1)
            dix[i] = dix[i + rng.choice([-1, 1])]
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=False)

    def doc_index_swap(p, rng):
        def fn(s, ptr, dix, rng):
            i = rng.randrange(1, len(dix) - 2)
            dix[i], dix[i + 1] = dix[i + 1], dix[i]
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=False)

    def pointers_edit(p, rng):
        def fn(s, ptr, dix, rng):
            i = rng.randrange(len(ptr))
            ptr[i] += rng.choice([-4, -2, 2, 4, 10**6])
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=False)

    def consistent_rewrite(p, rng):  # a self-consistent index of other documents: only the sidecar can tell
        def fn(s, ptr, dix, rng):
            i, j = _two_different(s, rng)
            s[i], s[j] = s[j], s[i]
            ptr = np.concatenate([[0], np.cumsum(s[:-1], dtype=np.int64)]) * 2
            return s, ptr, dix
        _edit_idx(p, rng, fn, sidecar=True)

    def truncate_or_extend(p, rng):
        f = files(p)[rng.randrange(2)]
        if rng.random() < 0.5 and not rng.randrange(2):
            no_sidecar(p)
        b = f.read_bytes()
        f.write_bytes(b[: rng.randrange(len(b))] if rng.random() < 0.5 else b + b"\0" * rng.choice([1, 2, 8, 80]))

    def sidecar_flip(p, rng):
        f = files(p)[2]
        f.write_bytes(bytes(_flip(bytearray(f.read_bytes()), rng, 2)))

    def sidecar_type(p, rng):
        f = files(p)[2]
        d = json.loads(f.read_text())
        d[rng.choice(sorted(d))] = _bad_value(rng)
        f.write_text(json.dumps(d))

    return {k: v for k, v in locals().items()
            if callable(v) and k not in ("files", "layout", "no_sidecar", "_edit_idx", "_two_different")}


# ---------------------------------------------------------------------------- worker


def run_case(pristine: Path, case: dict, ref: dict[str, str]) -> tuple[str, str]:
    """Materialise one mutated copy under a temp dir, read it, classify the result."""
    import rsdb

    kind, name = case["kind"], case["cls"]
    if name == "selftest_crash":  # --selftest: prove the driver tells a dead worker from an answer
        os.abort()
    if name == "selftest_hang":
        time.sleep(10**6)
    rng = random.Random(case["seed"])
    work = Path(tempfile.mkdtemp(prefix="rsdb-fuzz-"))
    try:
        if kind == "arrow":
            src = "arrow_offset" if name == "offset_nonzero" else "arrow"
            shutil.copytree(pristine / src, work / "d")
            target = work / "d"
            if name != "offset_nonzero":
                arrow_mutations()[name](target, rng)
        else:
            for ext in (".bin", ".idx", ".rsdb.json"):
                shutil.copy(pristine / f"mega{ext}", work / f"mega{ext}")
            target = work / "mega"
            megatron_mutations()[name](target, rng)
        try:
            got = read_output(kind, target, case.get("verify", "checksum"))
        except rsdb.ShardError as exc:
            return "shard_error", str(exc.problem)[:160]
        except Exception as exc:  # noqa: BLE001 - the point is to classify every exception
            return "other_error", f"{type(exc).__name__}: {exc}"[:200]
        return ("exact", "") if got == ref[kind] else ("silent_wrong", "output differs from the pristine read")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def worker_main(pristine: Path, cases_file: Path) -> None:
    ref = json.loads((pristine / "ref.json").read_text())
    for line in cases_file.read_text().splitlines():
        case = json.loads(line)
        print(json.dumps({"id": case["id"], "start": True}), flush=True)
        outcome, detail = run_case(pristine, case, ref)
        print(json.dumps({"id": case["id"], "outcome": outcome, "detail": detail}), flush=True)


# ---------------------------------------------------------------------------- driver


def make_cases(n_arrow: int, n_mega: int, seed: int, verify: str = "checksum", selftest: bool = False
               ) -> list[dict]:
    rng = random.Random(seed)
    a_names = [*arrow_mutations(), "offset_nonzero"]
    m_names = list(megatron_mutations())
    cases = []
    for i in range(n_arrow):
        cases.append({"kind": "arrow", "cls": a_names[i % len(a_names)], "seed": rng.getrandbits(48)})
    for i in range(n_mega):
        cases.append({"kind": "megatron", "cls": m_names[i % len(m_names)], "seed": rng.getrandbits(48)})
    if selftest:
        at = rng.randrange(len(cases) + 1)
        cases[at:at] = [{"kind": "arrow", "cls": "selftest_crash", "seed": 0},
                        {"kind": "arrow", "cls": "selftest_hang", "seed": 0}]
    for i, c in enumerate(cases):
        c["id"] = i
        c["verify"] = verify
    return cases


def run_batch(pristine: Path, cases: list[dict], timeout: float, results: dict, progress) -> None:
    """Feed ``cases`` to workers; a crash or hang ends that worker, the next one resumes after it."""
    todo = list(cases)
    while todo:
        # Cases go through a file, not stdin: a pipe both ways would deadlock once both fill.
        fd, name = tempfile.mkstemp(prefix="cases-", suffix=".jsonl", dir=pristine)
        with os.fdopen(fd, "w") as f:
            f.write("".join(json.dumps(c) + "\n" for c in todo))
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(pristine), "--cases", name],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout
        current, deadline = None, time.monotonic() + timeout + 30  # first case also pays the imports
        by_id = {c["id"]: c for c in todo}
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                proc.wait()
                if current is not None:
                    results[current] = ("hang", f"no answer in {timeout:.0f}s")
                    progress.update(1)
                break
            line = proc.stdout.readline()
            if not line:
                rc = proc.wait()
                if current is not None:
                    results[current] = ("crash", f"worker exit status {rc}")
                    progress.update(1)
                break
            msg = json.loads(line)
            if msg.get("start"):
                current, deadline = msg["id"], time.monotonic() + timeout
            else:
                results[msg["id"]] = (msg["outcome"], msg["detail"])
                current = None
                progress.update(1)
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        todo = [c for c in todo if c["id"] not in results]
        if todo and len(todo) == len(by_id) and current is None:
            raise RuntimeError("worker made no progress (does the script import?)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrow", type=int, default=1000, help="Arrow-shard mutations")
    ap.add_argument("--megatron", type=int, default=500, help="Megatron mutations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="worker processes at once")
    ap.add_argument("--case-timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--verify", default="checksum", choices=["off", "checksum", "full"],
                    help="the readers' verify setting (default: the library default); 'off' shows what it costs")
    ap.add_argument("--selftest", action="store_true",
                    help="add one case that crashes its worker and one that hangs (they must be counted so)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--show", type=int, default=5, help="print this many non-passing cases")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cases", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker, args.cases)
        return 0
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rsdb-fuzz-pristine-") as tmp:
        pristine = Path(tmp)
        build_pristine(pristine)
        ref = {"arrow": read_output("arrow", pristine / "arrow"), "megatron": read_output("megatron", pristine / "mega")}
        if read_output("arrow", pristine / "arrow_offset") != ref["arrow"]:
            print("the offset>0 pristine variant does not read as the pristine shards", file=sys.stderr)
        (pristine / "ref.json").write_text(json.dumps(ref))
        cases = make_cases(args.arrow, args.megatron, args.seed, args.verify, args.selftest)
        results: dict[int, tuple[str, str]] = {}
        chunks = [cases[i :: args.workers] for i in range(args.workers)]
        with tqdm(total=len(cases), desc="fuzz", unit="case", file=sys.stderr, mininterval=2) as bar, \
                ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda ch: run_batch(pristine, ch, args.case_timeout, results, bar), chunks))
    per_class: dict[tuple[str, str], Counter] = defaultdict(Counter)
    totals: dict[str, Counter] = defaultdict(Counter)
    bad = []
    for c in cases:
        outcome, detail = results[c["id"]]
        per_class[(c["kind"], c["cls"])][outcome] += 1
        totals[c["kind"]][outcome] += 1
        if outcome not in ("shard_error", "exact"):
            bad.append({**c, "outcome": outcome, "detail": detail})
    for (kind, cls), cnt in sorted(per_class.items()):
        print(json.dumps({"name": "fuzz_class", "kind": kind, "class": cls, **{o: cnt[o] for o in OUTCOMES}}))
    summary = {"name": "fuzz_summary", "seed": args.seed, "verify": args.verify, "seconds": round(time.perf_counter() - t0, 1),
               "load_avg": [round(x, 2) for x in os.getloadavg()]}
    for kind in ("arrow", "megatron"):
        summary[kind] = {"cases": sum(totals[kind].values()), **{o: totals[kind][o] for o in OUTCOMES}}
    real = [c for c in cases if not c["cls"].startswith("selftest")]
    n = len(real)
    ok = sum(1 for c in real if results[c["id"]][0] in ("shard_error", "exact"))
    summary["shard_error_or_exact_pct"] = round(100.0 * ok / n, 2) if n else 100.0
    print(json.dumps(summary))
    for b in bad[: args.show]:
        print(json.dumps({"name": "fuzz_failure", **b}))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"summary": summary, "failures": bad}, indent=2))
    return 0 if ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
