"""How often ``tokenizer.FastEncoder`` (the tiktoken twin) gives the ids of `tokenizers` itself.

Encodes every document of a JSONL(.zst) corpus both ways (no special tokens added) and
prints the documents with identical ids and the token positions that differ.

    .venv/bin/python benchmarks/fast_encoder_agreement.py --tokenizer OUT/tokenizer/tokenizer.json \
        --corpus ../shared/corpus/demo.jsonl.zst
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import zstandard
from tokenizers import Tokenizer

import tokenizer


def read_texts(path: Path, field: str) -> list[str]:
    with open(path, "rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw) if path.suffix == ".zst" else raw
        return [json.loads(line)[field] for line in io.TextIOWrapper(stream, encoding="utf-8") if line.strip()]


def differing_positions(a: list[int], b: list[int]) -> int:
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", type=Path, required=True, help="a tokenizer.json trained by trinity-data")
    ap.add_argument("--corpus", type=Path, required=True, help="JSONL or JSONL.zst with a text field")
    ap.add_argument("--field", default="text")
    args = ap.parse_args()
    tok = Tokenizer.from_file(str(args.tokenizer))
    texts = read_texts(args.corpus, args.field)
    fast = tokenizer.FastEncoder(tok, threads=1).encode_batch(texts)
    ref = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    same = sum(a == b for a, b in zip(fast, ref))
    tokens = sum(len(b) for b in ref)
    diff = sum(differing_positions(a, b) for a, b in zip(fast, ref))
    print(f"documents {len(texts):,}: identical ids in {same:,} ({same / max(1, len(texts)):.4%}); "
          f"tokens {tokens:,}, differing positions {diff:,}")


if __name__ == "__main__":
    main()
