"""Train a byte-level BPE tokenizer and write a standard ``tokenizer.json``.

The merges come from the `tokenizers` BPE trainer; this module then assembles the
final vocabulary in a fixed order, so ids are stable and meaningful:

=============  ===========================================================
ids            tokens
=============  ===========================================================
0 .. 15        special tokens (:data:`tokenizer.pretokenize.SPECIAL_TOKENS`)
16 .. 271      the 256 single bytes, in byte order
272 ..         forced digit groups ``00``..``999`` then `` 0``..`` 999``
               (``trinity`` rules only; 2,210 tokens)
then           learned merges in the order the trainer found them
=============  ===========================================================

Why force the digit groups: the pre-tokenizer cuts digit runs into place-aligned
groups, but BPE can still spell ``234`` as ``23`` ``4`` when the corpus never made
that merge worth it. Putting all 1-3 digit strings (and their space-prefixed forms)
in the vocabulary, with merges ranked before every learned one, makes each group
one token whatever the corpus held. Learned merges that produce one of them are
dropped as duplicates; no other learned merge can touch a digit piece, because
digit pieces hold nothing but digits and one optional space. The model uses
``ignore_merges`` (a piece that is a vocabulary token is that token, as in
tiktoken and Llama 3), so ids agree with a tiktoken ``Encoding`` built from the
same ranks.

The trainer is asked for ``vocab_size - 16`` symbols (bytes plus merges), which is
enough for the final size however many of its merges are digit duplicates. If the
corpus is too small to learn that many merges the vocabulary comes out smaller:
the report's ``vocab_reached`` says so and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .config import TrainConfig
from .corpus import ReadStats, iter_docs
from .pretokenize import SPECIAL_TOKENS, build_pre_tokenizer, forced_digit_strings, uses_digit_groups
from ._bytes import byte_to_char

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained tokenizer and what it took to make it."""

    tokenizer: object  # tokenizers.Tokenizer
    report: dict = field(default_factory=dict)


def _peak_rss_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_children_mb": round(kids, 1)}


def _trainer(cfg: TrainConfig, progress: bool):
    from tokenizers import pre_tokenizers, trainers

    kwargs = dict(
        vocab_size=cfg.vocab_size - len(SPECIAL_TOKENS),
        min_frequency=cfg.min_frequency,
        show_progress=progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    if cfg.max_token_length is not None:
        kwargs["max_token_length"] = cfg.max_token_length
    return trainers.BpeTrainer(**kwargs)


def _trained_merges(raw) -> list[tuple[str, str]]:
    merges = json.loads(raw.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def forced_merges(kind: str) -> list[tuple[str, str]]:
    """Merges that build every forced digit token, ranked before learned merges.

    Digit pairs first (``2``+``3``), then triples (``23``+``4``), then the space
    (``Ġ``+``234``), so every digit piece ends as one token under any merge order.
    """
    if not uses_digit_groups(kind):
        return []
    sp = byte_to_char()[ord(" ")]
    out = []
    for s in forced_digit_strings():
        if len(s) < 2:
            continue
        if s[0] == " ":
            out.append((sp, s[1:]))
        else:
            out.append((s[:-1], s[-1]))
    return out


def assemble(trained: list[tuple[str, str]], kind: str, vocab_size: int):
    """The final `tokenizers` Tokenizer from learned merges (see the module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    for ch in byte_to_char():
        vocab[ch] = len(vocab)
    merges: list[tuple[str, str]] = []
    for a, b in forced_merges(kind) + list(trained):
        if len(vocab) >= vocab_size:
            break
        new = a + b
        if new in vocab:
            continue  # a learned digit group, already forced
        if a not in vocab or b not in vocab:
            raise AssertionError(f"merge {a!r}+{b!r} refers to a token not in the vocabulary")
        vocab[new] = len(vocab)
        merges.append((a, b))
    model = models.BPE(vocab=vocab, merges=merges, ignore_merges=True)
    tok = Tokenizer(model)
    tok.pre_tokenizer = build_pre_tokenizer(kind)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = bos_post_processor()
    return tok


def bos_post_processor():
    """Prepend ``<|bos|>`` to every encoded text, as the tokenize job starts every
    training document with it (and ends it with ``<|eos|>``, which inference must not
    add: the model would see the end of its input as the end of a document).

    So ``AutoTokenizer(...)("hi")`` and vLLM give the model the input it was trained
    on; ``add_special_tokens=False`` gives the bare ids (what the tokenize job
    encodes before adding its markers). A pair is two documents, each with its BOS,
    as Llama 3 does.
    """
    from tokenizers import processors

    bos = SPECIAL_TOKENS[0]
    return processors.TemplateProcessing(
        single=f"{bos} $A:0", pair=f"{bos} $A:0 {bos}:1 $B:1", special_tokens=[(bos, 0)]
    )


def adds_bos(tok) -> bool:
    """Whether ``tok`` prepends ``<|bos|>`` when special tokens are added."""
    bos = SPECIAL_TOKENS[0]
    enc = tok.encode("", add_special_tokens=True)
    return bool(enc.ids) and enc.ids[0] == tok.token_to_id(bos)


def _texts(docs, progress: bool, total: int | None) -> Iterator[str]:
    if not progress:
        for doc in docs:
            yield doc.text
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="read", leave=True) as bar:
        for doc in docs:
            bar.update(len(doc.text.encode("utf-8")))
            yield doc.text


def _batched(texts: Iterable[str], n: int = 256) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def train(
    config: TrainConfig,
    *,
    texts: Iterable[str] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a tokenizer per ``config``; optionally save it to ``out_dir``.

    Args:
        config: the validated :class:`TrainConfig`.
        texts: train on these strings instead of ``config.inputs`` (tests, notebooks).
        out_dir: write ``tokenizer.json``, the `transformers` config files and
            ``train_report.json`` there.
        progress: show progress bars (CLI use).

    Returns:
        :class:`TrainResult` with the `tokenizers` Tokenizer and the report (time,
        peak memory, bytes read, vocabulary reached, skipped input).

    >>> cfg = TrainConfig(inputs=["-"], vocab_size=2490, min_frequency=1)
    >>> tok = train(cfg, texts=["Hello world, hello tokens! 2026"] * 20).tokenizer
    >>> tok.get_vocab_size()
    2490
    >>> tok.encode("Hello 2026").tokens
    ['<|bos|>', 'Hello', 'Ġ2', '026']
    >>> tok.encode("Hello 2026", add_special_tokens=False).tokens
    ['Hello', 'Ġ2', '026']
    """
    started = time.perf_counter()
    stats = ReadStats()
    if texts is None:
        docs = iter_docs(config, "train", stats)
        # The sharded route shows its own per-phase bars.
        texts = _texts(docs, progress and config.route != "sharded", config.max_bytes)
    else:
        texts = _count_bytes(texts, stats)
    trainer = _trainer(config, progress)
    count_stats: dict = {}
    if config.route == "direct":
        from tokenizers import Tokenizer, models

        raw = Tokenizer(models.BPE())
        raw.pre_tokenizer = build_pre_tokenizer(config.pretokenizer)
        raw.train_from_iterator(_batched(texts), trainer)
        read_done = time.perf_counter()
    elif config.route == "sharded":
        from .sharded import train_sharded

        raw, count_stats = train_sharded(config, texts, trainer, out_dir=out_dir, progress=progress)
        read_done = time.perf_counter()
    else:
        from .counts import count_pretokens, train_bpe_from_counts

        counts = count_pretokens(
            texts,
            config.pretokenizer,
            workers=config.workers,
            backend=config.backend,
            batch_bytes=config.batch_bytes,
            min_count=config.min_count,
            max_words=config.max_words,
            stats=count_stats,
        )
        read_done = time.perf_counter()
        count_stats["count_s"] = round(read_done - started, 2)
        raw = train_bpe_from_counts(counts, trainer)
        del counts
    trained = _trained_merges(raw)
    tok = assemble(trained, config.pretokenizer, config.vocab_size)
    reached = tok.get_vocab_size(with_added_tokens=True)
    if reached < config.vocab_size:
        log.warning(
            "vocabulary reached %d of %d: the corpus (%d bytes) has too few pairs seen >= %d times",
            reached, config.vocab_size, stats.bytes, config.min_frequency,
        )
    elapsed = time.perf_counter() - started
    report = {
        "vocab_size": config.vocab_size,
        "vocab_reached": reached,
        "learned_merges": len(trained),
        "seconds": round(elapsed, 2),
        # Counts route only: the direct route reads, counts and merges in one call.
        "read_and_count_seconds": round(read_done - started, 2) if config.route == "counts" else None,
        # Sharded route: the per-phase figures are in "counts" (count_s, merge_s, train_s).
        "input_bytes": stats.bytes,
        "input": stats.as_dict(),
        "counts": count_stats,
        **_peak_rss_mb(),
        "config": config.model_dump(),
    }
    if stats.bytes:
        report["peak_rss_mb_per_gb_input"] = round(report["peak_rss_mb"] / (stats.bytes / 1e9), 1)
    if out_dir is not None:
        save(tok, out_dir, report=report)
    return TrainResult(tok, report)


def _count_bytes(texts: Iterable[str], stats: ReadStats) -> Iterator[str]:
    for t in texts:
        stats.docs += 1
        stats.bytes += len(t.encode("utf-8", "surrogatepass"))
        yield t


def save(tok, out_dir: str | Path, *, report: dict | None = None, model_max_length: int = 1 << 17) -> Path:
    """Write ``tokenizer.json`` plus what ``transformers.AutoTokenizer`` needs.

    ``tokenizer_config.json`` says ``add_bos_token`` as the saved post-processor
    does (true for tokenizers trained here: BOS first, as in training) and
    ``add_eos_token: false``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    named = {"bos_token": SPECIAL_TOKENS[0], "eos_token": SPECIAL_TOKENS[1], "pad_token": SPECIAL_TOKENS[2]}
    extra = list(SPECIAL_TOKENS[3:])
    (out / "special_tokens_map.json").write_text(
        json.dumps({**named, "additional_special_tokens": extra}, indent=2) + "\n"
    )
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **named,
        "additional_special_tokens": extra,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        # Mirrors the post-processor in tokenizer.json (transformers reads both).
        "add_bos_token": adds_bos(tok),
        "add_eos_token": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if report is not None:
        (out / "train_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out
