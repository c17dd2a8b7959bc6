"""Rephrase stage through Ray vs the raw engine: output tokens/s, side by side in one run.

Modes:
  cpu  the ``transformers`` engine inside the Ray ``rephrase`` stage (one actor) vs plain
       ``transformers`` ``model.generate`` in a fresh process without Ray: same model, prompts,
       batch size, sampling and thread count; interleaved rounds, ratio of the best rounds.
  gpu  the ``vllm`` engine inside the Ray ``rephrase`` stage (one actor, one GPU) vs raw
       ``vllm.LLM.generate`` in this process on the same GPU, after Ray has released it.
       Target: ratio >= 0.9. See docs/gpu-recipe.md for running it on an offline H100.

Both sides get exactly the prompts the stage builds (``RephraseStage.plan``: style
template, chunking, chat template), the same sampling with ``ignore_eos`` (fixed output
length, as in the reference figures) and are warmed up first. Model loading and actor
start-up are excluded on both sides: the Ray side's time runs from the first batch's
start to the last batch's end, as stamped inside the actor; the Ray wall time including
start-up is printed too. Every token of every row counts, kept or rejected by validation
(a random-weight model's noise fails validation; the work is the same).

usage:
  python benchmarks/rephrase_bench.py cpu [--n 32] [--max-tokens 32] [--batch 8] [--repeat 5]
  python benchmarks/rephrase_bench.py gpu --model DIR [--n 2000] [--prompt-len 512] [--max-tokens 512]

Prints one JSON line per measurement and a final ``ratio`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO = REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True).strip()
    except Exception:  # noqa: BLE001 - a copied tree without git
        return "unknown"


def _emit(rec: dict, path: str | None) -> None:
    line = json.dumps(rec)
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _docs_from_corpus(n: int, max_chars: int):
    import pyarrow as pa
    import zstandard

    ids, texts, langs = [], [], []
    with zstandard.open(DEMO, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            t = d["text"].strip()
            if len(t) < 200:
                continue
            ids.append(d["id"])
            texts.append(t[:max_chars])
            langs.append(d.get("lang"))
            if len(ids) == n:
                break
    return pa.table({"id": ids, "text": texts, "lang": langs})


def _docs_random(n: int, prompt_len: int, tokenizer, seed: int = 0):
    """Documents of ``prompt_len`` random token ids, decoded (the reference benchmark's shape)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    hi = min(len(tokenizer), 151643) - 1
    texts = [tokenizer.decode(rng.integers(10, hi, prompt_len).tolist(), skip_special_tokens=True) for _ in range(n)]
    return pa.table({"id": [f"r{i}" for i in range(n)], "text": texts, "lang": [None] * n})


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used: on a shared box, the fair cost measure."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _quiet_ray(ray) -> None:
    import logging

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _ray_side(ray, table, stage, rows_per_batch: int) -> dict:
    """Run the stage over ``table`` in one actor; time first batch start -> last batch end inside the actor."""
    import pyarrow as pa

    from pipeline.rephrase._ray import StageActor, split_rejected
    warm = table.slice(0, 1)

    class TimedStageActor(StageActor):
        def __init__(self, stage):
            super().__init__(stage)
            self.stage.process(warm)  # load the engine, warm up generation and validation (lingua models)

        def __call__(self, batch):
            c0, t0 = _cpu_s(), time.time()
            out = super().__call__(batch)
            t1, c1 = time.time(), _cpu_s()
            n = out.num_rows
            out = out.append_column("_t0", pa.array([t0] * n, pa.float64()))
            out = out.append_column("_t1", pa.array([t1] * n, pa.float64()))
            return out.append_column("_cpu", pa.array([c1 - c0] * n, pa.float64()))

    ds = ray.data.from_arrow(table).repartition(max(1, table.num_rows // rows_per_batch))
    kw = dict(stage.ray_map_kwargs())
    kw.update(batch_size=rows_per_batch, concurrency=1)
    t_wall = time.perf_counter()
    out = ds.map_batches(TimedStageActor, fn_constructor_args=(stage,), batch_format="pyarrow", **kw)
    res = pa.concat_tables(ray.get(out.to_arrow_refs()), promote_options="permissive")
    wall = time.perf_counter() - t_wall
    kept, rejected = split_rejected(res)
    t0 = min(res.column("_t0").to_pylist())
    t1 = max(res.column("_t1").to_pylist())
    windows = sorted(set(zip(res.column("_t0").to_pylist(), res.column("_t1").to_pylist())))
    cpu = sum(dict(zip(res.column("_t0").to_pylist(), res.column("_cpu").to_pylist())).values())  # one per batch
    overlap = sum(max(0.0, w1[1] - w2[0]) for w1, w2 in zip(windows, windows[1:]) if w2[0] < w1[1])
    tokens = sum(res.column("rephrase_completion_tokens").to_pylist())
    prompt_tokens = sum(res.column("rephrase_prompt_tokens").to_pylist())
    reasons: dict[str, int] = {}
    for r in rejected.column("reject_reason").to_pylist() if rejected.num_rows else []:
        reasons[r.split(":")[0]] = reasons.get(r.split(":")[0], 0) + 1
    return dict(output_tokens=tokens, prompt_tokens=prompt_tokens, seconds=t1 - t0, cpu_s=cpu, wall_with_startup_s=wall, rows=res.num_rows,
                batches=len(windows), batch_overlap_s=round(overlap, 3),
                kept=kept.num_rows, rejected=reasons)


def run_cpu(a) -> None:
    import ray

    from pipeline.rephrase import RephraseConfig, RephraseStage
    from pipeline.rephrase.engines import SamplingConfig, build_engine
    from pipeline.rephrase.tiny import make_tiny_model

    model = a.model
    if model is None:
        model = str(make_tiny_model(Path(tempfile.mkdtemp()) / "tiny", hidden_size=a.hidden, num_layers=a.layers))
    table = _docs_from_corpus(a.n, a.max_chars) if DEMO.exists() else None
    if table is None:
        raise SystemExit(f"demo corpus not found at {DEMO}")
    sampling = SamplingConfig(temperature=0.7, top_p=1.0, max_tokens=a.max_tokens, ignore_eos=True, seed=0)
    cfg = RephraseConfig(
        engine={"backend": "transformers", "model": model, "device": "cpu", "batch_size": a.batch,
                "num_threads": a.threads},
        styles=[a.style], sampling=sampling, batch_size=a.rows_per_batch, num_cpus=1,
    )
    stage = RephraseStage(cfg)

    # the exact prompts the stage sends, rendered as the engine renders them
    eng = build_engine(cfg.engine)
    plan = stage.plan(table, eng)
    prompts = [eng.render(p) for p in plan["prompts"]]
    prompts_file = Path(tempfile.mkdtemp()) / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    eng.close()

    def raw_once() -> dict:
        # plain transformers in a fresh process without Ray, like the actor: same footing for both sides
        cmd = [sys.executable, __file__, "raw-cpu", "--model", model, "--prompts-file", str(prompts_file),
               "--batch", str(a.batch), "--max-tokens", str(a.max_tokens), "--threads", str(a.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))  # what Ray sets in the actor (num_cpus)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    _quiet_ray(ray)
    common = dict(device="2-core x86_64 CPU VM, shared/noisy", commit=_commit(), mode="cpu", model=model, docs=table.num_rows,
                  prompts=len(prompts), max_tokens=a.max_tokens, engine_batch=a.batch, threads=a.threads, style=a.style)
    raws, rays = [], []
    try:
        for rep in range(a.repeat):
            r = raw_once()
            r["out_tok_s"] = r["output_tokens"] / r["seconds"]
            raws.append(r)
            _emit(dict(name="rephrase_raw_transformers_generate", rep=rep, items_s=len(prompts) / r["seconds"], **r, **common), a.json)
            y = _ray_side(ray, table, stage, a.rows_per_batch)
            y["out_tok_s"] = y["output_tokens"] / y["seconds"]
            rays.append(y)
            _emit(dict(name="rephrase_ray_stage_transformers", rep=rep, items_s=table.num_rows / y["seconds"], **y, **common), a.json)
    finally:
        ray.shutdown()
    # Interleaved rounds; the headline is best-of-N (as timeit does): other work on a shared box
    # only ever slows a round down, so the fastest round of each side is the least disturbed one.
    best_raw = max(r["out_tok_s"] for r in raws)
    best_ray = max(y["out_tok_s"] for y in rays)
    med_raw = statistics.median(r["out_tok_s"] for r in raws)
    med_ray = statistics.median(y["out_tok_s"] for y in rays)
    per_round = [round(y["out_tok_s"] / r["out_tok_s"], 3) for r, y in zip(raws, rays)]
    # output tokens per CPU-second of the process doing the work: what the Ray path costs in compute,
    # immune to how the shared box schedules the two processes
    cpu_raw = statistics.median(r["output_tokens"] / r["cpu_s"] for r in raws)
    cpu_ray = statistics.median(y["output_tokens"] / y["cpu_s"] for y in rays)
    _emit(dict(name="rephrase_ratio", ratio=round(best_ray / best_raw, 3), ray_out_tok_s=round(best_ray, 1),
               raw_out_tok_s=round(best_raw, 1), ratio_of_medians=round(med_ray / med_raw, 3),
               cpu_ratio=round(cpu_ray / cpu_raw, 3), ray_out_tok_per_cpu_s=round(cpu_ray, 1),
               raw_out_tok_per_cpu_s=round(cpu_raw, 1), rounds=a.repeat, per_round_ratios=per_round, target=0.9,
               **common), a.json)


def run_raw_cpu(a) -> None:
    """One raw round: load the model (untimed), warm up, time ``model.generate`` over the prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    prompts = json.loads(Path(a.prompts_file).read_text())
    tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    hf = AutoModelForCausalLM.from_pretrained(a.model).eval()
    kw = dict(do_sample=True, temperature=0.7, top_p=1.0, top_k=0, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        hf.generate(**tok(prompts[:2], return_tensors="pt", padding=True, add_special_tokens=False), max_new_tokens=4, **kw)
    new_tokens = prompt_tokens = 0
    c0, t0 = _cpu_s(), time.perf_counter()
    for i in range(0, len(prompts), a.batch):
        batch = prompts[i : i + a.batch]
        torch.manual_seed(i)
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = hf.generate(**enc, max_new_tokens=a.max_tokens, min_new_tokens=a.max_tokens, **kw)
        new_tokens += (out.shape[1] - enc["input_ids"].shape[1]) * len(batch)
        prompt_tokens += int(enc["attention_mask"].sum())
    t1, c1 = time.perf_counter(), _cpu_s()
    print(json.dumps(dict(output_tokens=new_tokens, prompt_tokens=prompt_tokens, seconds=t1 - t0, cpu_s=c1 - c0)))


def run_gpu(a) -> None:
    import pyarrow as pa  # noqa: F401
    import ray
    from transformers import AutoTokenizer

    from pipeline.rephrase import RephraseConfig, RephraseStage
    from pipeline.rephrase.engines import Engine, SamplingConfig
    from pipeline.rephrase.engines.vllm_engine import vllm_llm_kwargs, vllm_sampling_params

    tok = AutoTokenizer.from_pretrained(a.model)
    table = _docs_random(a.n, a.prompt_len, tok)
    sampling = SamplingConfig(temperature=0.7, top_p=1.0, max_tokens=a.max_tokens, ignore_eos=True, seed=0)
    engine = {"backend": "vllm", "model": a.model, "dtype": "bfloat16", "gpu_memory_utilization": a.gpu_mem,
              "max_model_len": a.max_model_len, "timeout_s": 1800}
    if a.max_num_seqs:
        engine["max_num_seqs"] = a.max_num_seqs
    if a.max_num_batched_tokens:
        engine["max_num_batched_tokens"] = a.max_num_batched_tokens
    cfg = RephraseConfig(
        engine=engine, styles=[a.style], sampling=sampling, batch_size=a.rows_per_batch,
        validation={"check_language": False},  # random-token documents have no language
    )
    stage = RephraseStage(cfg)

    class _Tok(Engine):  # the plan needs token counts, the context length and the chat template only
        backend = "vllm"

        @property
        def tokenizer(self):
            return tok

        @property
        def context_length(self):
            return a.max_model_len

        def _generate(self, prompts, sampling, seeds):
            raise NotImplementedError

    planner = _Tok(cfg.engine)
    plan = stage.plan(table, planner)
    prompts = [planner.render(p) for p in plan["prompts"]]
    common = dict(device=a.device_name, commit=_commit(), mode="gpu", model=a.model, docs=table.num_rows,
                  prompts=len(prompts), prompt_len=a.prompt_len, max_tokens=a.max_tokens, rows_per_batch=a.rows_per_batch,
                  style=a.style)

    # 1. through Ray (the actor holds the GPU until ray.shutdown)
    ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False)
    _quiet_ray(ray)
    try:
        y = _ray_side(ray, table, stage, a.rows_per_batch)
    finally:
        ray.shutdown()
    y["out_tok_s"] = y["output_tokens"] / y["seconds"]
    _emit(dict(name="rephrase_ray_stage_vllm", items_s=table.num_rows / y["seconds"], **y, **common), a.json)

    # 2. raw vLLM on the same GPU, same prompts, same per-request seeds and sampling
    import torch
    from vllm import LLM

    t0 = time.perf_counter()
    llm = LLM(**vllm_llm_kwargs(cfg.engine))
    load_s = time.perf_counter() - t0
    llm.generate(prompts[:8], vllm_sampling_params(SamplingConfig(max_tokens=4)), use_tqdm=False)  # warm-up
    params = [vllm_sampling_params(sampling, s) for s in plan["seeds"]]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    dt = time.perf_counter() - t0
    n_out = sum(len(o.outputs[0].token_ids) for o in outs)
    raw = dict(output_tokens=n_out, seconds=dt, load_s=load_s, out_tok_s=n_out / dt)
    _emit(dict(name="rephrase_raw_vllm_generate", items_s=len(prompts) / dt, **raw, **common), a.json)
    _emit(dict(name="rephrase_ratio", ratio=round(y["out_tok_s"] / raw["out_tok_s"], 3),
               ray_out_tok_s=round(y["out_tok_s"]), raw_out_tok_s=round(raw["out_tok_s"]), target=0.9, **common), a.json)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["cpu", "gpu", "raw-cpu"], help="raw-cpu: internal, one raw round of cpu mode")
    ap.add_argument("--prompts-file", help=argparse.SUPPRESS)
    ap.add_argument("--model", help="model folder (cpu: default builds a tiny random model)")
    ap.add_argument("--n", type=int, help="documents (cpu: 48, gpu: 2000)")
    ap.add_argument("--max-tokens", type=int, help="output tokens per prompt (cpu: 32, gpu: 512)")
    ap.add_argument("--style", default="distill")
    ap.add_argument("--rows-per-batch", type=int, help="rows per Ray batch (cpu: 16, gpu: 1000)")
    ap.add_argument("--json", help="also append the JSON lines to this file")
    # cpu
    ap.add_argument("--batch", type=int, default=8, help="cpu: prompts per generate() call, both sides")
    ap.add_argument("--threads", type=int, default=1, help="cpu: torch threads, both sides (the actor asks Ray for 1 CPU)")
    ap.add_argument("--repeat", type=int, default=5, help="cpu: interleaved raw/ray rounds; the ratio is best-of-N")
    ap.add_argument("--max-chars", type=int, default=400, help="cpu: documents cut to this many characters")
    ap.add_argument("--hidden", type=int, default=128, help="cpu: tiny model width")
    ap.add_argument("--layers", type=int, default=4, help="cpu: tiny model depth")
    # gpu
    ap.add_argument("--prompt-len", type=int, default=512, help="gpu: random-token document length")
    ap.add_argument("--gpu-mem", type=float, default=0.9)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--max-num-seqs", type=int)
    ap.add_argument("--max-num-batched-tokens", type=int)
    ap.add_argument("--device-name", default=os.environ.get("BENCH_DEVICE", "GPU"))
    a = ap.parse_args()
    if a.mode == "raw-cpu":
        run_raw_cpu(a)
    elif a.mode == "cpu":
        a.n, a.max_tokens, a.rows_per_batch = a.n or 32, a.max_tokens or 32, a.rows_per_batch or 16
        run_cpu(a)
    else:
        if not a.model:
            ap.error("gpu mode needs --model")
        a.n, a.max_tokens, a.rows_per_batch = a.n or 2000, a.max_tokens or 512, a.rows_per_batch or 1000
        run_gpu(a)


if __name__ == "__main__":
    main()
