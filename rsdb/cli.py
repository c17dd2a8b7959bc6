"""`trinity-data rsdb ...`: token shards and the loader from the command line.

* ``write-jsonl``: a JSONL(.zst) corpus's text -> byte-level token shards (one shard
  directory per source), for streaming before a trained tokenizer exists.
* ``inspect``: a shard directory's (or Megatron dataset's) summary and validation.
* ``stream``: run the loader for some steps and print throughput, achieved versus
  target source shares per phase, and documents per sequence.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .naming import SourceNameClash, claim_source_dir, source_dir_name

app = typer.Typer(help="Token shards and the RSDB loader.", no_args_is_help=True)
console = Console()

# Byte-level vocabulary: ids 0-255 are UTF-8 bytes, then the two document markers.
BYTE_BOS, BYTE_EOS, BYTE_VOCAB = 256, 257, 258


def _fail(exc: Exception, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the compiled core's version."""
    from rsdb import _core

    typer.echo(f"rsdb core state version {_core.core_version()}")


def _open_text(path: Path) -> tuple[io.TextIOBase, Any]:
    raw = open(path, "rb")
    if path.suffix == ".zst":
        import zstandard

        stream: Any = zstandard.ZstdDecompressor().stream_reader(raw)
    elif path.suffix == ".gz":
        import gzip

        stream = gzip.GzipFile(fileobj=raw)
    else:
        stream = raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="strict"), raw


@app.command("write-jsonl")
def write_jsonl(
    input: Path = typer.Argument(..., help="JSONL corpus (.jsonl, .jsonl.zst or .jsonl.gz)"),
    out: Path = typer.Option(..., "--out", help="output folder: one shard directory per source"),
    source_field: Optional[str] = typer.Option(None, help="row field naming each document's source"),
    source: str = typer.Option("default", help="source name when --source-field is not given"),
    text_field: str = typer.Option("text", help="row field holding the text"),
    id_field: str = typer.Option("id", help="row field holding the document id"),
    lang_field: str = typer.Option("lang", help="row field stored as the shards' 'lang' column when present"),
    shard_tokens: int = typer.Option(1 << 26, help="tokens per shard file"),
    limit: Optional[int] = typer.Option(None, help="stop after this many rows"),
) -> None:
    """Turn a JSONL corpus's text into BYTE-LEVEL token shards (vocab 258: bytes + BOS/EOS).

    Each document becomes [BOS] + its UTF-8 bytes + [EOS]. Rows without text (or
    without a source when --source-field is given) or with bad JSON are counted and
    written with their reason to OUT/_rejected.jsonl.
    """
    import numpy as np
    from tqdm import tqdm

    import rsdb

    if not input.is_file():
        _fail(FileNotFoundError(f"{input}: no such file"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "_rejected.jsonl").unlink(missing_ok=True)  # from an earlier run into the same folder
    writers: dict[str, rsdb.ShardWriter] = {}
    docs: dict[str, int] = {}
    folders: dict[str, str] = {}  # shard folder -> the source that holds it
    rejected: list[dict[str, Any]] = []
    started = time.perf_counter()
    text_io, raw = _open_text(input)
    size = input.stat().st_size
    bos, eos = np.array([BYTE_BOS], np.uint16), np.array([BYTE_EOS], np.uint16)
    rows = 0
    with text_io, tqdm(total=size, unit="B", unit_scale=True, desc=f"bytes of {input.name}") as bar:
        last = 0
        for lineno, line in enumerate(text_io, 1):
            if limit is not None and rows >= limit:
                break
            rows += 1
            if lineno % 256 == 0:
                pos = raw.tell()
                bar.update(pos - last)
                last = pos
            if not line.strip():
                rows -= 1
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rejected.append({"line": lineno, "reason": f"bad_json: {exc.msg}"})
                continue
            if not isinstance(row, dict):
                rejected.append({"line": lineno, "reason": "not_an_object"})
                continue
            text = row.get(text_field)
            if not isinstance(text, str) or not text:
                rejected.append({"line": lineno, "id": row.get(id_field), "reason": f"no_text: field {text_field!r}"})
                continue
            src = row.get(source_field) if source_field else source
            if src is None or src == "":
                rejected.append({"line": lineno, "id": row.get(id_field),
                                 "reason": f"no_source: field {source_field!r}"})
                continue
            src = str(src)
            w = writers.get(src)
            if w is None:
                try:
                    folder = claim_source_dir(folders, src)
                except SourceNameClash as exc:
                    _fail(ValueError(f"{input}:{lineno}: {exc}"), code=2)
                w = writers[src] = rsdb.ShardWriter(out / folder, source=src, shard_tokens=shard_tokens,
                                                    tokenizer="bytes", vocab_size=BYTE_VOCAB)
                docs[src] = 0
            body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            extra = {"lang": str(row[lang_field])} if row.get(lang_field) is not None else {}
            doc_id = row.get(id_field)
            w.add(np.concatenate([bos, body, eos]), doc_id=str(doc_id) if doc_id is not None else None, **extra)
            docs[src] += 1
        bar.update(size - last)
    manifests = {src: w.close() for src, w in writers.items()}
    if rejected:
        with open(out / "_rejected.jsonl", "w") as f:
            for r in rejected:
                f.write(json.dumps(r) + "\n")
    secs = time.perf_counter() - started
    table = Table(title=f"byte-level token shards in {out} ({secs:.1f}s)")
    for col in ("source", "dir", "docs", "tokens", "shards"):
        table.add_column(col, justify="left" if col in ("source", "dir") else "right")
    for src in sorted(manifests):
        m = manifests[src]
        table.add_row(src, source_dir_name(src), f"{m['num_docs']:,}", f"{m['num_tokens']:,}", str(len(m["shards"])))
    console.print(table)
    total = sum(m["num_tokens"] for m in manifests.values())
    console.print(f"{rows:,} rows, {sum(docs.values()):,} documents, {total:,} tokens "
                  f"({total / max(secs, 1e-9) / 1e6:.1f} M tokens/s); rejected {len(rejected)}"
                  + (f" (reasons in {out / '_rejected.jsonl'})" if rejected else ""))


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="a shard directory (or manifest.json), or a Megatron prefix"),
    verify: bool = typer.Option(False, "--verify", help="also checksum every shard and scan its token ids"),
) -> None:
    """Print a shard directory's manifest summary and validate its shards (exit 1 if invalid).

    A folder of shard directories (as ``write-jsonl`` makes) inspects each of them.
    """
    if path.is_dir() and not (path / "manifest.json").exists():
        subdirs = sorted(c for c in path.iterdir() if (c / "manifest.json").is_file())
        if subdirs:
            for sub in subdirs:
                inspect(sub, verify)
            return
    import numpy as np

    import rsdb
    from rsdb.loader import _is_megatron

    try:
        if _is_megatron(str(path)):
            m = rsdb.open_megatron(path)
            lengths = np.diff(m.offsets)
            table = Table(title=f"Megatron dataset {m.path}")
            table.add_column("key")
            table.add_column("value", justify="right")
            for k, v in (("dtype", str(m.dtype)), ("documents", f"{m.num_docs:,}"), ("tokens", f"{m.num_tokens:,}"),
                         ("sequences", f"{m.num_sequences:,}")):
                table.add_row(k, v)
            _length_rows(table, lengths)
            console.print(table)
            console.print("[green]valid[/] (index checked; token ids are not range-checked for Megatron data)")
            return
        shards = rsdb.open_shards(path, verify=verify)
        table = Table(title=f"token shards {shards.path}")
        table.add_column("key")
        table.add_column("value", justify="right")
        man = shards.manifest
        for k in ("source", "tokenizer", "vocab_size", "format_version"):
            table.add_row(k, str(man.get(k)))
        table.add_row("documents", f"{shards.num_docs:,}")
        table.add_row("tokens", f"{shards.num_tokens:,}")
        table.add_row("shards", str(shards.num_shards))
        table.add_row("bytes", f"{sum(int(s.get('bytes', 0)) for s in shards.shards):,}")
        lengths = []
        for i in range(shards.num_shards):
            v = shards.view(i)
            if not verify:
                v.validate()  # offsets and token range, without the checksum
            lengths.append(np.diff(v.offsets))
        if lengths:
            _length_rows(table, np.concatenate(lengths))
        for k, v in (man.get("extra") or {}).items():
            table.add_row(f"extra.{k}", json.dumps(v)[:80])
        console.print(table)
        console.print(f"[green]valid[/] ({'checksums, offsets and token ids' if verify else 'structure, offsets and token ids'}"
                      " checked)")
    except rsdb.TrinityError as exc:
        _fail(exc, code=1)


def _length_rows(table: Table, lengths) -> None:
    import numpy as np

    if len(lengths) == 0:
        return
    q = np.percentile(lengths, [50, 90, 99])
    table.add_row("doc tokens: mean / p50 / p90 / p99 / max",
                  f"{lengths.mean():,.0f} / {q[0]:,.0f} / {q[1]:,.0f} / {q[2]:,.0f} / {int(lengths.max()):,}")


def _sources_from_paths(paths: list[Path]) -> tuple[dict[str, list[str]], list[str]]:
    """Source name -> paths, from each shard directory's manifest (Megatron: the file name)."""
    from rsdb.loader import _is_megatron

    sources: dict[str, list[str]] = {}
    skipped: list[str] = []

    def add(p: Path) -> None:
        if _is_megatron(str(p)):
            name = Path(str(p).removesuffix(".bin").removesuffix(".idx")).name
            sources.setdefault(name, []).append(str(p).removesuffix(".bin").removesuffix(".idx"))
        elif (p / "manifest.json").is_file():
            name = str(json.loads((p / "manifest.json").read_text()).get("source", p.name))
            sources.setdefault(name, []).append(str(p))
        elif p.is_dir() and any((c / "manifest.json").is_file() for c in p.iterdir() if c.is_dir()):
            for c in sorted(p.iterdir()):
                if (c / "manifest.json").is_file():
                    add(c)
        else:
            skipped.append(str(p))

    seen_prefixes = set()
    for p in paths:
        key = str(p).removesuffix(".bin").removesuffix(".idx")
        if key in seen_prefixes:
            continue
        seen_prefixes.add(key)
        add(p)
    return sources, skipped


def _load_phases(spec: str) -> list[dict[str, Any]]:
    text = Path(spec).read_text() if os.path.isfile(spec) else spec
    try:
        phases = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--phases-json is neither a file nor valid JSON: {exc}") from None
    if not isinstance(phases, list):
        raise typer.BadParameter("--phases-json must be a JSON list of {tokens, weights, name}")
    return phases


@app.command()
def stream(
    paths: list[Path] = typer.Argument(..., help="shard directories (or folders of them) and Megatron prefixes"),
    seq_len: int = typer.Option(8192, help="sequence length (rows hold seq_len + 1 tokens)"),
    batch_size: int = typer.Option(8, help="rows per batch"),
    steps: int = typer.Option(100, help="batches to stream (fewer if the phases or epochs end first)"),
    phases_json: Optional[str] = typer.Option(
        None, help='phases as JSON or a JSON file: [{"tokens": N, "weights": {"src": w}, "name": "p1"}, ...]'),
    buffer_docs: int = typer.Option(1024, help="documents open in the pool"),
    max_chunk: Optional[int] = typer.Option(None, help="most tokens copied per pick"),
    seed: int = typer.Option(0),
    epochs: Optional[int] = typer.Option(None, help="finite mode: emit every token this many times"),
    packing: str = typer.Option("rsdb", help="rsdb or sequential"),
    rank: int = typer.Option(0),
    world_size: int = typer.Option(1),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the summary as JSON here"),
) -> None:
    """Stream batches and print tokens/s, per-source shares per phase and documents per sequence."""
    import numpy as np

    import rsdb

    sources, skipped = _sources_from_paths(paths)
    for s in skipped:
        console.print(f"[yellow]note:[/] skipping {s}: not a shard directory or Megatron prefix", soft_wrap=True)
    if not sources:
        _fail(rsdb.ConfigError("no shard directories or Megatron datasets among the given paths"))
    phases = _load_phases(phases_json) if phases_json else None
    try:
        started = time.perf_counter()
        loader = rsdb.RSDBLoader(sources, seq_len=seq_len, batch_size=batch_size, buffer_docs=buffer_docs,
                                 max_chunk=max_chunk, seed=seed, epochs=epochs, phases=phases, packing=packing,
                                 rank=rank, world_size=world_size)
        startup = time.perf_counter() - started
        segs: list[float] = []
        real = 0
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in loader:
            n += 1
            segs.append(float(loader._last_segments.mean()))
            real += int(batch["loss_mask"].sum())
            if n >= steps:
                break
        secs = time.perf_counter() - t0
        cpu = time.process_time() - c0
    except rsdb.ConfigError as exc:  # bad arguments (--seq-len 0, unknown source...): 2, like every config error
        _fail(exc, code=2)
    except rsdb.TrinityError as exc:  # the data failed while streaming
        _fail(exc, code=1)
    stats = loader.stats()
    total = n * batch_size * (seq_len + 1)
    summary: dict[str, Any] = {
        "batches": n, "tokens": total, "real_tokens": real, "seconds": secs, "cpu_seconds": cpu,
        "startup_s": startup, "tokens_per_s": total / max(secs, 1e-9), "tokens_per_cpu_s": total / max(cpu, 1e-9), "docs_per_sequence": float(np.mean(segs)) if segs else 0.0,
        "sources": {k: v for k, v in sources.items()}, "phases": [], "epochs": stats["epochs"],
    }
    head = Table(title=f"RSDB stream: {n} batches of {batch_size} x {seq_len + 1} ({packing})")
    head.add_column("metric")
    head.add_column("value", justify="right")
    head.add_row("tokens/s (wall)", f"{summary['tokens_per_s'] / 1e6:,.1f} M")
    head.add_row("tokens/s (process CPU time)", f"{summary['tokens_per_cpu_s'] / 1e6:,.1f} M")
    head.add_row("tokens streamed", f"{total:,} ({real:,} unmasked)")
    head.add_row("docs per sequence (mean segments per row)", f"{summary['docs_per_sequence']:.2f}")
    head.add_row("start-up", f"{startup * 1000:.0f} ms")
    head.add_row("wall time", f"{secs:.2f} s")
    console.print(head)
    table = Table(title="tokens per source and phase: achieved vs target share")
    for col in ("phase", "source", "tokens", "achieved", "target", "deviation (pp)", "epochs"):
        table.add_column(col, justify="left" if col in ("phase", "source") else "right")
    natural = {name: t / max(1, sum(loader.tokens_per_source)) for name, t in
               zip(loader.source_names, loader.tokens_per_source)}
    for pi, pname in enumerate(loader.phase_names):
        got = stats["tokens_per_phase"].get(pname)
        if not got:
            continue
        targets = loader.phases[pi].shares() if loader.phases else natural
        ptotal = sum(got.values())
        rows = []
        for name in loader.source_names:
            share = got.get(name, 0) / ptotal
            target = targets.get(name, 0.0)
            rows.append({"phase": pname, "source": name, "tokens": got.get(name, 0), "achieved": share,
                         "target": target, "deviation_pp": 100 * (share - target)})
            table.add_row(pname, name, f"{got.get(name, 0):,}", f"{100 * share:.2f}%", f"{100 * target:.2f}%",
                          f"{100 * (share - target):+.2f}", f"{stats['epochs'][name]:.2f}")
        summary["phases"].append(rows)
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2))
