"""Elastic resume in a torch.distributed job (gloo on CPU): save the data position on one
topology, continue on another, every token exactly once.

Each rank reads its streams through ``rsdb.torch.RSDBIterableDataset`` and a DataLoader;
a ``StateTracker`` keeps the state of the batches the trainer consumed. At a checkpoint
every rank calls ``gather_distributed`` (one ``gather_object``), rank 0 merges the parts
into one topology-free state and writes it; a restart with any world size, worker count,
batch size or pool size loads that file on every rank.

    # 4 ranks x 2 DataLoader workers, 20 steps, then checkpoint
    python docs/examples/elastic_resume.py --sources '{"web": "out/demo/bytes/web-docs"}' \\
        --world-size 4 --num-workers 2 --steps 20 --save ckpt/data.json
    # the job comes back on 3 ranks x 1 worker with a larger batch
    python docs/examples/elastic_resume.py --sources '{"web": "out/demo/bytes/web-docs"}' \\
        --world-size 3 --num-workers 1 --loader-json '{"batch_size": 16}' \\
        --resume ckpt/data.json --steps 20 --save ckpt/data2.json

Ranks are started here with ``torch.multiprocessing`` on one machine; under ``torchrun``
(``RANK``/``WORLD_SIZE`` set) the script uses the launcher's rank instead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist

import rsdb
from rsdb.torch import RSDBIterableDataset, StateTracker, gather_distributed

DEFAULTS = {"seq_len": 1024, "batch_size": 8, "buffer_docs": 256, "seed": 0}


def run_rank(rank: int, args: argparse.Namespace, init: str) -> None:
    world = args.world_size
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    kwargs = {**DEFAULTS, **json.loads(args.loader_json)}
    ds = RSDBIterableDataset(json.loads(args.sources), return_state=True, rank=rank, world_size=world, **kwargs)
    if args.resume:
        ds.load_state_dict(rsdb.load_state(args.resume))  # any former topology
    tracker = StateTracker(max(1, args.num_workers), dataset=ds)
    emitted: dict[str, list[int]] = defaultdict(list)
    steps = 0
    for batch in ds.dataloader(num_workers=args.num_workers):
        if steps == args.steps:
            break
        tracker.update(batch)  # the batch is now consumed: its state counts
        # ... forward / backward / optimizer step on batch["tokens"] here ...
        if args.log_tokens:
            m = batch["loss_mask"]
            for t, d, s in zip(batch["tokens"][m].tolist(), batch["doc_ids"][m].tolist(),
                               batch["source_ids"][m].tolist()):
                emitted[f"{s}/{d}"].append(t)
        steps += 1
    state = gather_distributed(tracker)  # a collective: every rank, same step
    if rank == 0 and args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        rsdb.save_state(state, args.save)
        print(json.dumps({"saved": args.save, **rsdb.state.state_summary(state)}))
    if args.log_tokens:
        Path(args.log_tokens).mkdir(parents=True, exist_ok=True)
        (Path(args.log_tokens) / f"rank{rank}.json").write_text(json.dumps({"steps": steps, "tokens": emitted}))
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", required=True, help='JSON: {"name": "shard dir", ...}')
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per rank (0: in the rank)")
    p.add_argument("--steps", type=int, default=10, help="steps to run before the checkpoint")
    p.add_argument("--loader-json", default="{}", help="RSDBLoader arguments as JSON (phases, schedule, ...)")
    p.add_argument("--resume", help="a global state written by an earlier run")
    p.add_argument("--save", help="where rank 0 writes the global state after --steps")
    p.add_argument("--log-tokens", help="folder for each rank's emitted tokens (for audits)")
    args = p.parse_args(argv)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun
        args.world_size = int(os.environ["WORLD_SIZE"])
        run_rank(int(os.environ["RANK"]), args, "env://")
        return
    torch.multiprocessing.spawn(run_rank, args=(args, f"tcp://127.0.0.1:{_free_port()}"), nprocs=args.world_size)


if __name__ == "__main__":
    main()
