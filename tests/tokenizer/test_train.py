"""Training: exact vocab size, forced digit tokens, special ids, routes, inputs, transformers."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tokenizer
from rsdb.errors import ConfigError, TrinityError
from tokenizer.pretokenize import SPECIAL_TOKENS, forced_digit_strings

from tokenizer_cases import CODE_AND_SPACE, DIGITS, SCRIPTS, SMALL_VOCAB

NO_DIGITS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Le renard brun saute par-dessus le chien paresseux.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "def main():\n    return hello_world(x, y)\n",
] * 30


def test_vocab_size_exact_and_specials(small_tok, small_tok_dir):
    assert small_tok.get_vocab_size(with_added_tokens=True) == SMALL_VOCAB
    for i, t in enumerate(SPECIAL_TOKENS):
        assert small_tok.token_to_id(t) == i
    assert (tokenizer.bos_id(small_tok), tokenizer.eos_id(small_tok), tokenizer.pad_id(small_tok)) == (0, 1, 2)
    report = json.loads((small_tok_dir / "train_report.json").read_text())
    assert report["vocab_reached"] == SMALL_VOCAB
    assert report["input"]["heldout_docs"] > 0 and report["input_bytes"] >= 1_000_000


def test_special_tokens_encode_as_one(small_tok):
    enc = small_tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert enc.ids[0] == 7 and enc.ids[-1] == 8


@pytest.mark.parametrize("kind", ["trinity", "trinity_strict"])
def test_every_digit_group_is_one_token_without_digits_in_corpus(kind):
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=2600, min_frequency=1, pretokenizer=kind)
    res = tokenizer.train(cfg, texts=NO_DIGITS)
    tok = res.tokenizer
    assert tok.get_vocab_size() == 2600
    for s in forced_digit_strings():
        ids = tok.encode(s, add_special_tokens=False).ids
        assert len(ids) == 1, (s, tok.encode(s, add_special_tokens=False).tokens)
    # ... and inside running text, each place-aligned group is one token.
    tokens = tok.encode("The fox: 1234567 and 0042.", add_special_tokens=False).tokens
    assert [t for t in tokens if any(c.isdigit() for c in t)] == ["Ġ1", "234", "567", "Ġ0", "042"]
    assert tokens[:2] == ["The", "Ġfox"]


def test_small_corpus_reports_vocab_reached():
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=50_000, min_frequency=2)
    res = tokenizer.train(cfg, texts=NO_DIGITS[:5])
    assert res.report["vocab_reached"] < 50_000
    assert res.tokenizer.get_vocab_size() == res.report["vocab_reached"]


def test_counts_route_matches_direct(demo_corpus):
    """Counting pre-tokens in worker processes and training on the counts learns the
    very same merges as streaming text into the trainer."""
    base = dict(inputs=[str(demo_corpus)], vocab_size=3000, max_bytes=150_000)
    direct = tokenizer.train(tokenizer.TrainConfig(**base)).tokenizer
    counted = tokenizer.train(tokenizer.TrainConfig(**base, route="counts", workers=2)).tokenizer
    assert direct.to_str() == counted.to_str()


def test_counts_route_on_ray_prunes(demo_corpus, ray_cluster):
    stats_cfg = tokenizer.TrainConfig(
        inputs=[str(demo_corpus)], vocab_size=3000, max_bytes=300_000, route="counts", backend="ray",
        workers=2, min_count=2, max_words=5000, batch_bytes=50_000,
    )
    res = tokenizer.train(stats_cfg)
    c = res.report["counts"]
    assert c["distinct"] <= 5000 and c["distinct_before_prune"] >= c["distinct"]
    assert res.tokenizer.get_vocab_size() == 3000


def test_gpt4o_baseline_trains():
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=400, pretokenizer="gpt4o", min_frequency=1)
    tok = tokenizer.train(cfg, texts=NO_DIGITS).tokenizer
    assert tok.get_vocab_size() == 400


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="vocab_size"):
        tokenizer.TrainConfig.parse(inputs=["x"], vocab_size=1000)
    with pytest.raises(ConfigError, match="holdout_fraction"):
        tokenizer.TrainConfig.parse(inputs=["x"], holdout_fraction=1.5)
    with pytest.raises(ConfigError, match="bogus"):
        tokenizer.TrainConfig.parse(inputs=["x"], bogus=1)
    with pytest.raises(ConfigError, match="lang_weights"):
        tokenizer.TrainConfig.parse(inputs=["x"], lang_weights={"en": -1})


def test_inputs_parquet_jsonl_text_and_bad_rows(tmp_path):
    d = tmp_path / "curated"
    d.mkdir()
    texts = [t for t in NO_DIGITS[:50]]
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(50)], "text": texts, "lang": ["en"] * 50}), d / "a.parquet")
    (d / "rejected").mkdir()
    pq.write_table(pa.table({"oops": [1]}), d / "rejected" / "r.parquet")  # skipped: rejected/
    (d / "_work").mkdir()
    pq.write_table(pa.table({"text": ["state"]}), d / "_work" / "dedup.parquet")  # skipped: _work/
    (d / "manifest.json").write_text(json.dumps({"files": 1}))  # skipped: a manifest, not data
    (d / "b.jsonl").write_text(
        "\n".join([json.dumps({"text": "hello there"}), "{not json", json.dumps({"text": 5}), "[1]"]) + "\n"
    )
    (d / "c.txt").write_text("plain text line\n" * 10)
    (d / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    from tokenizer.corpus import ReadStats, iter_docs, list_files

    assert sorted(p.rsplit("/", 1)[-1] for p in list_files([str(d)])) == [
        "a.parquet", "b.jsonl", "broken.parquet", "c.txt"
    ]

    stats = ReadStats()
    cfg = tokenizer.CorpusConfig(inputs=[str(d)])
    docs = list(iter_docs(cfg, "all", stats))
    assert len(docs) == 50 + 1 + 1
    assert stats.rejected_rows == 3 and stats.rejected_files == 1
    assert set(stats.reasons) == {"invalid_json", "text_not_string", "not_an_object", "bad_file"}
    assert any("b.jsonl line 2" in e["where"] for e in stats.examples)


def test_reads_the_same_file_names_as_curation(tmp_path):
    """Codec and format come from the one table in pipeline.formats (``.zstd``, ``.pq`` too)."""
    import zstandard

    from pipeline.formats import detect_format
    from tokenizer.corpus import ReadStats, iter_docs, list_files

    d = tmp_path / "in"
    d.mkdir()
    rows = b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(4))
    (d / "a.jsonl.zstd").write_bytes(zstandard.ZstdCompressor().compress(rows))
    pq.write_table(pa.table({"text": ["pq one", "pq two"]}), d / "b.pq")
    (d / "c.md.gz").write_bytes(__import__("gzip").compress(b"# notes\n"))
    found = list_files([str(d)])
    assert [detect_format(p) for p in found] == ["jsonl", "parquet", "text"]
    stats = ReadStats()
    texts = sorted(doc.text for doc in iter_docs(tokenizer.CorpusConfig(inputs=[str(d)]), "all", stats))
    assert texts == ["# notes\n", "doc 0", "doc 1", "doc 2", "doc 3", "pq one", "pq two"]
    assert stats.rejected_rows == 0 and stats.rejected_files == 0


def test_missing_input_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        list(tokenizer.corpus.iter_docs(tokenizer.CorpusConfig(inputs=[str(tmp_path / "nope")])))


def test_holdout_split_is_disjoint_and_stable(demo_corpus):
    from tokenizer.corpus import iter_docs

    cfg = tokenizer.CorpusConfig(inputs=[str(demo_corpus)], holdout_fraction=0.1, max_bytes=None)
    held = [d.id for d in iter_docs(cfg, "heldout")]
    train_ids = {d.id for d in iter_docs(cfg, "train")}
    assert held and not (set(held) & train_ids)
    assert held == [d.id for d in iter_docs(cfg, "heldout")]
    assert 0.05 < len(held) / (len(held) + len(train_ids)) < 0.15


def test_sampling_weights(demo_corpus):
    from tokenizer.corpus import iter_docs

    base = tokenizer.CorpusConfig(inputs=[str(demo_corpus)])
    n = {}
    for d in iter_docs(base):
        n[d.source] = n.get(d.source, 0) + 1
    cfg = tokenizer.CorpusConfig(inputs=[str(demo_corpus)], source_weights={"code-go": 0, "fiction-ish": 2.0})
    m = {}
    for d in iter_docs(cfg):
        m[d.source] = m.get(d.source, 0) + 1
    assert "code-go" not in m and m["fiction-ish"] == 2 * n["fiction-ish"]
    assert m["web-docs"] == n["web-docs"]


def test_loads_in_transformers(small_tok_dir, small_tok):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(small_tok_dir))
    text = "The price is 1234567! 東京2024年 <|eos|>"
    assert hf.encode(text, add_special_tokens=False) == small_tok.encode(text, add_special_tokens=False).ids
    assert hf.bos_token_id == 0 and hf.eos_token_id == 1 and hf.pad_token_id == 2
    assert len(hf) == SMALL_VOCAB
    assert hf.decode(hf.encode("naïve café 😀", add_special_tokens=False)) == "naïve café 😀"


def test_adds_bos_like_the_tokenize_job(small_tok_dir, small_tok, ray_cluster, tmp_path):
    """Through transformers (AutoTokenizer and PreTrainedTokenizerFast) a text starts with
    <|bos|> exactly as the tokenize job starts every training document; the job's ids are
    BOS + text + EOS, and inference adds no EOS."""
    transformers = pytest.importorskip("transformers")
    from tokenizer.tokenize_job import TokenizeConfig, tokenize_to_shards

    import rsdb

    texts = ["The price is 1234567!", "東京に行きます。 Привет", "def f(x):\n    return x\n"]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": texts}), tmp_path / "in.parquet")
    tokenize_to_shards(TokenizeConfig(tokenizer=str(small_tok_dir), inputs=[str(tmp_path / "in.parquet")],
                                      output=str(tmp_path / "tok"), source="all"))
    shards = rsdb.open_shards(tmp_path / "tok" / "all")
    job = sorted(shards[i].tolist() for i in range(shards.num_docs))
    config = json.loads((small_tok_dir / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    for cls in (transformers.AutoTokenizer, transformers.PreTrainedTokenizerFast):
        hf = cls.from_pretrained(str(small_tok_dir))
        got = sorted(hf(t)["input_ids"] + [hf.eos_token_id] for t in texts)
        assert got == job
        assert hf("hi")["input_ids"][0] == hf.bos_token_id == 0
        assert hf("hi", add_special_tokens=False)["input_ids"] == small_tok.encode("hi", add_special_tokens=False).ids
        assert hf("a", "b")["input_ids"] == [0, *hf.encode("a", add_special_tokens=False), 0,
                                             *hf.encode("b", add_special_tokens=False)]
        assert hf.decode(hf("naïve café")["input_ids"], skip_special_tokens=True) == "naïve café"
    assert small_tok.encode("hi").ids[0] == 0  # plain `tokenizers` too


def test_tiktoken_with_our_ranks_gives_same_ids(small_tok):
    """The benchmark's tiktoken twin (same ranks, one-regex pattern) encodes identically."""
    tiktoken = pytest.importorskip("tiktoken")
    from tokenizer.tiktoken_compat import to_tiktoken

    enc = to_tiktoken(small_tok)
    for text, _ in DIGITS + SCRIPTS + CODE_AND_SPACE:
        assert enc.encode_ordinary(text) == small_tok.encode(text, add_special_tokens=False).ids, text


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a valid"):
        tokenizer.load(tmp_path)


def test_special_id_missing(small_tok):
    with pytest.raises(TrinityError, match="no special token"):
        tokenizer.special_id(small_tok, "<|nope|>")


def test_fast_encoder_matches_tokenizers(small_tok, demo_corpus):
    """The tiktoken fast path gives the very same ids on real held-out text (whole
    documents and short paragraphs, one thread and two), on special-token text
    (which it hands to `tokenizers`) and on long digit runs."""
    pytest.importorskip("tiktoken")
    from tokenizer.corpus import iter_docs

    cfg = tokenizer.CorpusConfig(inputs=[str(demo_corpus)], holdout_fraction=0.05, max_bytes=400_000)
    texts = [d.text for d in iter_docs(cfg, "heldout")]
    texts += [p for t in texts[:20] for p in t.split("\n\n")]
    texts += ["9" * 5000 + " ok", "chat <|im_start|>user hi<|im_end|>", "", "1,234,567.89 東京2024年", "a <| b"]
    want = [e.ids for e in small_tok.encode_batch(texts, add_special_tokens=False)]
    for threads in (1, 2, 3):
        fast = tokenizer.FastEncoder(small_tok, threads=threads)
        assert fast.encode_batch(texts) == want
        assert fast.encode_batch(texts[:1]) == want[:1] and fast.encode_batch([]) == []
        fast.close()


def test_fast_encoder_follows_the_cjk_rule():
    """A `trinity_strict` tokenizer gets the strict one-regex twin (read from its
    pre-tokenizer), so its FastEncoder ids equal `tokenizers'` on Japanese text too."""
    pytest.importorskip("tiktoken")
    texts = ["東京に行きます。コーヒーを飲む。", "食べる 東京タワー 2024年"] * 40 + NO_DIGITS
    for kind in ("trinity", "trinity_strict"):
        cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=2600, min_frequency=1, pretokenizer=kind)
        tok = tokenizer.train(cfg, texts=texts).tokenizer
        want = [e.ids for e in tok.encode_batch(texts[:3], add_special_tokens=False)]
        assert tokenizer.FastEncoder(tok, threads=1).encode_batch(texts[:3]) == want
        pieces = tok.encode("東京に行きます", add_special_tokens=False).tokens
        assert (len(pieces) == 1) == (kind == "trinity"), pieces


@pytest.mark.timeout(60)
def test_fast_encoder_digit_run_is_linear(small_tok):
    """The twin's one-regex digit rule is linear: a 1 MB digit run needs no fallback."""
    pytest.importorskip("tiktoken")
    text = "x " + "7" * 1_000_001 + " y"
    started = time.perf_counter()
    ids = tokenizer.FastEncoder(small_tok, threads=1).encode_batch([text])[0]
    elapsed = time.perf_counter() - started
    assert ids == small_tok.encode(text, add_special_tokens=False).ids
    assert elapsed < 20, elapsed  # quadratic would take hours
