"""Batch heterogeneity: the same small GPT trained twice, sequential packing vs RSDB.

Both runs use the same model seed, corpus, optimizer, schedule, microbatch shape
and number of steps; only the loader's ``packing`` differs. Each optimizer step
accumulates gradients over ``--micro-batches`` loader batches, so per-step batch
heterogeneity (BH = max - mean microbatch loss) is defined. Attention is
restricted to each document (block-diagonal causal mask from the loader's
``doc_ids``/``position_ids``) and rotary positions come from ``position_ids``.

Reported per packing: BH mean/p95/max, loss spikes (loss above rolling mean +
k * rolling std), final train loss, held-out eval loss on identical eval rows,
tokens seen, loader-side microbatch statistics, and the fraction of step time
spent waiting for the loader. Outputs: a table on stdout, one JSON line per
packing, ``bh_results.json``, per-run tracker JSONL and two PNGs in ``--out``.

Data: byte-level tokens (UTF-8 bytes, vocabulary 256) of
``../shared/corpus/demo.jsonl.zst``, written once as RSDB shards per corpus
source; ``--tokens DIR`` trains on real token shards instead.

    .venv/bin/python benchmarks/bh_experiment.py --quick   # ~2-3 min on 2 cores
    .venv/bin/python benchmarks/bh_experiment.py           # CPU default, ~10 min
    .venv/bin/python benchmarks/bh_experiment.py --gpu     # bigger model on one GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bh_data import (  # noqa: E402
    docs_from_shards,
    eval_batches,
    prepare_byte_shards,
    shard_sources,
    vocab_size_of,
)

log = logging.getLogger("bh_experiment")

# name: (d_model, layers, heads, seq_len, micro_batch_size, micro_batches, steps, lr)
PRESETS = {
    "quick": dict(d_model=64, layers=2, heads=2, seq_len=128, micro_batch_size=8, micro_batches=4, steps=100,
                  lr=3e-3, eval_rows=64),
    "cpu": dict(d_model=128, layers=4, heads=4, seq_len=256, micro_batch_size=8, micro_batches=4, steps=500,
                lr=2e-3, eval_rows=128),
    "gpu": dict(d_model=512, layers=8, heads=8, seq_len=1024, micro_batch_size=16, micro_batches=8, steps=1000,
                lr=1e-3, eval_rows=512),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small model, 100 steps (~2-3 min on 2 cores)")
    size.add_argument("--gpu", action="store_true", help="bigger model on CUDA, loader in DataLoader workers")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: from the size preset)")
    p.add_argument("--micro-batches", type=int, help="microbatches (loader batches) per optimizer step")
    p.add_argument("--micro-batch-size", type=int, help="rows per microbatch")
    p.add_argument("--seq-len", type=int, help="tokens per row")
    p.add_argument("--d-model", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (warmup then cosine to 10%%)")
    p.add_argument("--buffer-docs", type=int, default=1024, help="RSDB document buffer size")
    p.add_argument("--seed", type=int, default=0, help="model init and loader seed, shared by both runs")
    p.add_argument("--packings", default="sequential,rsdb", help="comma-separated packings to compare")
    p.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "demo.jsonl.zst",
                   help="JSONL.zst corpus for byte-level tokens (default: ../shared/corpus/demo.jsonl.zst)")
    p.add_argument("--tokens", type=Path, help="train on these RSDB token shards (a shard dir or a dir of them)")
    p.add_argument("--eval-tokens", type=Path, help="held-out token shards for eval rows (with --tokens)")
    p.add_argument("--out", type=Path, default=REPO / "out" / "bh", help="output folder")
    p.add_argument("--eval-rows", type=int, help="held-out rows scored at each eval")
    p.add_argument("--eval-every", type=int, help="steps between evals (default: steps/10)")
    p.add_argument("--spike-window", type=int, default=50)
    p.add_argument("--spike-k", type=float, default=3.0)
    p.add_argument("--workers", type=int, help="DataLoader workers for the loader (default: 0 on CPU, 4 on GPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores not already busy, >= 1)")
    p.add_argument("--device", help="torch device (default: cuda with --gpu, else cpu)")
    p.add_argument("--report", type=Path, nargs="+", metavar="DIR",
                   help="no training: merge the bh_results.json of these --out folders into a table and PNGs in --out")
    a = p.parse_args(argv)
    preset = PRESETS["quick" if a.quick else "gpu" if a.gpu else "cpu"]
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.preset = "quick" if a.quick else "gpu" if a.gpu else "cpu"
    a.eval_every = a.eval_every or max(1, a.steps // 10)
    a.workers = a.workers if a.workers is not None else (4 if a.gpu else 0)
    a.device = a.device or ("cuda" if a.gpu else "cpu")
    a.packings = [x.strip() for x in a.packings.split(",") if x.strip()]
    bad = [x for x in a.packings if x not in ("sequential", "rsdb")]
    if bad:
        p.error(f"--packings: unknown packing(s) {bad}; use sequential and/or rsdb")
    for k in ("steps", "micro_batches", "micro_batch_size", "seq_len", "eval_rows"):
        if getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    return a


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_threads() -> int:
    """CPU threads for torch: the cores not already busy (1-minute load average), at least 1.

    Measured on a shared 2-core VM at load ~11: 2 intra-op threads ran the quick
    preset at 33 s/step, 1 thread at 0.9 s/step (OpenMP threads spin-wait for each
    other when the cores are oversubscribed).
    """
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def make_batches(sources: dict[str, str], packing: str, a: argparse.Namespace):
    """An iterator of numpy batch dicts and the source names, in-process or through DataLoader workers."""
    import rsdb

    if not hasattr(rsdb, "RSDBLoader"):
        raise SystemExit("this rsdb build has no RSDBLoader; rebuild the package (make venv)")
    kwargs = dict(seq_len=a.seq_len, batch_size=a.micro_batch_size, buffer_docs=a.buffer_docs, seed=a.seed,
                  packing=packing)
    if a.workers <= 0:
        loader = rsdb.RSDBLoader(sources, **kwargs)
        return iter(loader), list(loader.source_names)
    try:
        from rsdb.torch import RSDBIterableDataset as Dataset
    except ImportError:  # the torch adapter is optional; a minimal one does the same worker split
        Dataset = _WorkerSplitDataset
    names = list(rsdb.RSDBLoader(sources, **kwargs).source_names)
    dl = torch.utils.data.DataLoader(Dataset(sources, **kwargs), batch_size=None, num_workers=a.workers,
                                     pin_memory=a.device.startswith("cuda"), prefetch_factor=4)
    return iter(dl), names  # batches arrive as CPU tensors; the model and LoaderStats accept them


class _WorkerSplitDataset(torch.utils.data.IterableDataset):
    """Each DataLoader worker runs its own RSDBLoader stream (worker_id / num_workers)."""

    def __init__(self, sources, **kwargs):
        self.sources, self.kwargs = sources, kwargs

    def __iter__(self):
        import rsdb

        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info is not None else (0, 1)
        return iter(rsdb.RSDBLoader(self.sources, worker_id=wid, num_workers=n, **self.kwargs))


def lr_at(step: int, a: argparse.Namespace) -> float:
    warm = max(1, a.steps // 20)
    if step < warm:
        return a.lr * (step + 1) / warm
    t = (step - warm) / max(1, a.steps - warm)
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model, batches, device) -> float:
    from bh_model import batch_loss

    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad(), _autocast(device):
        for b in batches:
            loss, k = batch_loss(model, b, device)
            tot += float(loss) * k
            n += k
    model.train()
    return tot / max(1, n)


def _autocast(device):
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_one(packing: str, sources: dict[str, str], vocab: int, evals: list[dict], a: argparse.Namespace):
    """Train one model with one packing; returns (result dict, LoaderStats of its microbatches)."""
    from tqdm.auto import tqdm

    from bh_model import GPTConfig, TinyGPT, batch_loss
    from rsdb.diagnostics import BHTracker, LoaderStats, SpikeRule

    device = torch.device(a.device)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    cfg = GPTConfig(vocab_size=vocab, d_model=a.d_model, n_layer=a.layers, n_head=a.heads)
    model = TinyGPT(cfg).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    batches, names = make_batches(sources, packing, a)
    lstats = LoaderStats(micro_per_step=a.micro_batches, source_names=names)
    rule = SpikeRule(window=min(a.spike_window, max(2, a.steps // 4)), k=a.spike_k,
                     min_history=min(20, max(2, a.steps // 8)))
    meta = {"packing": packing, "model": cfg.to_dict(), "params": model.num_params(), "seed": a.seed,
            "seq_len": a.seq_len, "micro_batch_size": a.micro_batch_size, "micro_batches": a.micro_batches}
    tracker = BHTracker(a.out / f"run-{packing}.jsonl", rule=rule, run=packing, meta=meta)
    wait_s = step_s = 0.0
    warm_wait = warm_step = 0.0  # step 0 (worker start-up, first shard opens), left out of the wait fraction
    dev_err, ent_err = [], []  # per-microbatch deviations from the step mean: loss vs token entropy
    eval_curve = []
    t_start = time.perf_counter()
    # disable=None: a bar on a terminal, none in logs (the eval lines report progress there)
    for step in tqdm(range(a.steps), desc=f"{packing:>10}", unit="step", leave=False, disable=None):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        micro_losses, micro_tokens, micro_ent = [], [], []
        wait_before = wait_s
        for _ in range(a.micro_batches):
            tw = time.perf_counter()
            try:
                b = next(batches)
            except StopIteration:
                raise SystemExit(f"{packing}: the loader ran out of data at step {step}; use fewer --steps") from None
            wait_s += time.perf_counter() - tw
            micro_ent.append(lstats.add(b).token_entropy)
            with _autocast(device):
                loss, n = batch_loss(model, b, device)
            (loss / a.micro_batches).backward()
            micro_losses.append(float(loss.detach()))
            micro_tokens.append(n)
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_s += time.perf_counter() - t0
        if step == 0:
            warm_wait, warm_step = wait_s - wait_before, step_s
        extra = {}
        if (step + 1) % a.eval_every == 0 or step == a.steps - 1:
            extra["eval_loss"] = evaluate(model, evals, device)
            eval_curve.append((step, extra["eval_loss"]))
            log.info("%s step %d/%d: train loss %.4f, eval loss %.4f, %.2fs/step", packing, step + 1, a.steps,
                     float(np.mean(micro_losses)), extra["eval_loss"], step_s / (step + 1))
        ml, me = np.array(micro_losses), np.array(micro_ent)
        dev_err.extend(ml - ml.mean())
        ent_err.extend(me - me.mean())
        tracker.log_step(micro_losses, step=step, micro_tokens=micro_tokens, grad_norm=gnorm,
                         lr=opt.param_groups[0]["lr"], extra=extra)
    wall = time.perf_counter() - t_start
    summary = tracker.close()
    ls = lstats.summary()
    with open(a.out / f"loader-{packing}.jsonl", "w") as fh:
        for m in lstats.micro:
            fh.write(json.dumps(m.to_dict()) + "\n")
    corr = float(np.corrcoef(dev_err, ent_err)[0, 1]) if np.std(dev_err) > 0 and np.std(ent_err) > 0 else float("nan")
    return {
        "name": "bh_experiment",
        "packing": packing,
        "steps": a.steps,
        "bh_mean": summary["bh_mean"],
        "bh_p95": summary["bh_p95"],
        "bh_max": summary["bh_max"],
        "bh_rel_mean": summary["bh_rel_mean"],
        "n_spikes": summary["n_spikes"],
        "spike_steps": summary["spike_steps"],
        "loss_final": summary["loss_final"],
        "loss_jitter": summary["loss_jitter"],
        "final_window": summary["final_window"],
        "eval_loss": eval_curve[-1][1],
        "eval_curve": eval_curve,
        "tokens_seen": summary["tokens"],
        "grad_norm_mean": summary.get("grad_norm_mean"),
        "distinct_docs_mean": ls["distinct_docs"]["mean"],
        "max_doc_share_mean": ls["max_doc_share"]["mean"],
        "dominated_frac": ls["dominated_frac"],
        "source_entropy_mean": ls["source_entropy"]["mean"],
        "entropy_heterogeneity_mean": ls["entropy_heterogeneity"]["mean"],
        "corr_loss_dev_vs_token_entropy_dev": corr,
        "loader_wait_frac": (wait_s - warm_wait) / (step_s - warm_step) if step_s > warm_step else float("nan"),
        "first_step_s": warm_step,
        "s_per_step": step_s / a.steps,
        "tokens_per_s": summary["tokens"] / step_s if step_s else float("nan"),
        "wall_s": wall,
        "params": model.num_params(),
        "workers": a.workers,
        "device": a.device,
        "loader_stats": ls,
        "jsonl": str(a.out / f"run-{packing}.jsonl"),
        "loader_jsonl": str(a.out / f"loader-{packing}.jsonl"),
        "micro_batches": a.micro_batches,
        "source_names": names,
    }, lstats


def print_table(results: list[dict]) -> None:
    cols = [
        ("packing", "packing", "{}"),
        ("BH mean", "bh_mean", "{:.4f}"),
        ("BH p95", "bh_p95", "{:.4f}"),
        ("BH max", "bh_max", "{:.4f}"),
        ("spikes", "n_spikes", "{}"),
        ("loss jitter", "loss_jitter", "{:.4f}"),
        ("final loss", "loss_final", "{:.4f}"),
        ("eval loss", "eval_loss", "{:.4f}"),
        ("tokens", "tokens_seen", "{:,}"),
        ("docs/mb", "distinct_docs_mean", "{:.1f}"),
        ("top-doc share", "max_doc_share_mean", "{:.3f}"),
        ("loader wait", "loader_wait_frac", "{:.2%}"),
        ("s/step", "s_per_step", "{:.3f}"),
    ]
    rows = [[fmt.format(r[key]) for _, key, fmt in cols] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _, _) in enumerate(cols)]
    line = " | ".join(h.rjust(w) for (h, _, _), w in zip(cols, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(v.rjust(w) for v, w in zip(row, widths)))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    a = parse_args(argv)
    if a.report:
        return report_main(a.report, a.out)
    torch.set_num_threads(a.threads or default_threads())
    log.info("preset %s on %s, %d torch thread(s)", a.preset, a.device, torch.get_num_threads())
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--gpu/--device cuda: no CUDA device is available to torch")
    a.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if a.tokens is not None:
        sources = shard_sources(a.tokens)
        vocab = vocab_size_of(sources)
        if a.eval_tokens is not None:
            eval_docs, held_out = [], True
            for d in shard_sources(a.eval_tokens).values():
                eval_docs += docs_from_shards(Path(d), 4 * a.eval_rows)
        else:
            log.warning("no --eval-tokens: eval rows come from the training shards (not held out)")
            eval_docs, held_out = [], False
            for d in sources.values():
                eval_docs += docs_from_shards(Path(d), a.eval_rows)
        data_desc = f"token shards {a.tokens}"
    else:
        if not a.corpus.exists():
            raise SystemExit(f"{a.corpus}: corpus not found (pass --corpus or --tokens)")
        sources, eval_docs = prepare_byte_shards(a.corpus, a.out / "data")
        vocab, held_out = 256, True
        data_desc = f"byte-level tokens of {a.corpus.name}"
    evals = eval_batches(eval_docs, rows=a.eval_rows, seq_len=a.seq_len, batch_size=a.micro_batch_size,
                         seed=a.seed + 1)
    log.info("data ready in %.1fs: %d sources, vocab %d, %d eval rows (%s)", time.perf_counter() - t0,
             len(sources), vocab, a.eval_rows, "held out" if held_out else "NOT held out")

    results = []
    for packing in a.packings:
        r, _ = run_one(packing, sources, vocab, evals, a)
        r.update(preset=a.preset, data=data_desc, eval_held_out=held_out, commit=commit(),
                 torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
        results.append(r)
        print(json.dumps({k: v for k, v in r.items()
                          if k not in ("loader_stats", "eval_curve", "spike_steps", "source_names")}),
              flush=True)

    (a.out / "bh_results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                       "title": _title(a, results[0]["params"], data_desc),
                                                       "results": results}, indent=1))
    report(results, a.out, _title(a, results[0]["params"], data_desc))
    return 0


def _title(a: argparse.Namespace, params: int, data_desc: str) -> str:
    return (f"{a.preset}: {params / 1e6:.2f}M-param GPT, {a.steps} steps x {a.micro_batches} microbatches x "
            f"{a.micro_batch_size}x{a.seq_len} tokens, {data_desc}")


def report(results: list[dict], out: Path, title: str) -> None:
    """Table, ratio line and the two PNGs from finished runs (their JSONL files in ``out`` or elsewhere)."""
    from rsdb.diagnostics import LoaderStats, MicrobatchStats, plot_loader_stats, plot_runs

    order = {"sequential": 0, "rsdb": 1}
    results = sorted(results, key=lambda r: order.get(r["packing"], 2))
    for r in results:  # fields added after a run was made are recomputed from its tracker log
        if "loss_jitter" not in r:
            r["loss_jitter"] = summarize_log(r["jsonl"])
    png = plot_runs({r["packing"]: r["jsonl"] for r in results}, out / "bh_experiment.png", title=title)
    lst = {}
    for r in results:
        p = Path(r.get("loader_jsonl", ""))
        if p.is_file():
            ls = LoaderStats(int(r.get("micro_batches", 1)))
            ls.source_names = r.get("source_names")
            ls.micro = [MicrobatchStats(**json.loads(x)) for x in p.read_text().splitlines() if x.strip()]
            lst[r["packing"]] = ls
    loader_png = None
    if lst:
        loader_png = plot_loader_stats(lst, out / "bh_loader_stats.png",
                                       title="Loader statistics of the training microbatches")
    print()
    print(f"Batch heterogeneity, {title}")
    print_table(results)
    if [r["packing"] for r in results] == ["sequential", "rsdb"]:
        seq, rs = results
        if seq["bh_mean"] > 0:
            print(f"BH mean: rsdb / sequential = {rs['bh_mean'] / seq['bh_mean']:.3f}; "
                  f"eval loss difference (rsdb - sequential) = {rs['eval_loss'] - seq['eval_loss']:+.4f}")
    print(f"plots: {png}" + (f", {loader_png}" if loader_png else "") + f"; results in {out}")


def summarize_log(path: str) -> float:
    from rsdb.diagnostics import read_run, summarize

    return summarize(read_run(path).records)["loss_jitter"]


def report_main(dirs: list[Path], out: Path) -> int:
    """``--report``: merge bh_results.json of runs made separately (e.g. one packing per process)."""
    results, title = [], None
    for d in dirs:
        f = d / "bh_results.json"
        if not f.is_file():
            raise SystemExit(f"{f}: not found (run the experiment with --out {d} first)")
        data = json.loads(f.read_text())
        results += data["results"]
        title = title or data.get("title")
    out.mkdir(parents=True, exist_ok=True)
    report(results, out, title or "Batch heterogeneity")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
