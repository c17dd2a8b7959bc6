"""pii: each kind found and redacted with its token, validated numbers only, quiet on code; and on Ray.

The last test runs a real curate (local Ray cluster) with multilingual_quality,
decontaminate and pii: every row kept or rejected with its reason, PII counts per kind
in the manifest, the matched eval set and n-gram kept on rejected rows.

Run: .venv/bin/python -m pytest tests/pipeline/stages/test_pii.py -q
"""

from __future__ import annotations

import glob
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.stages.pii import Pii, PiiConfig

PLANTED = {
    "email": "anna.schmidt@uni-bonn.de",
    "phone": "+49 30 901820",
    "phone_us": "(202) 555-0143",
    "ip": "81.169.145.105",
    "ipv6": "2001:4860:4860::8888",
    "credit_card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "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",
}
TOKEN = {"email": "<EMAIL>", "phone": "<PHONE>", "phone_us": "<PHONE>", "ip": "<IP>", "ipv6": "<IP>",
         "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>", "aws": "<SECRET>", "github": "<SECRET>"}
CODE = '''import hashlib
__version__ = "1.2.3.4"
REQUIRES = ["requests==2.31.0.1", "numpy>=1.26.4.0"]
DIGEST = "9fceb02d0ae598e95dc970b74767f19372d61af8"  # git sha1
UUID = "123e4567-e89b-12d3-a456-426614174000"
MASK = 0xFFFFFFFF00000000
EULER = 0.5772156649015329
HOST, PORT = "127.0.0.1", 8080
LAN = "192.168.10.42"
TABLE = [2863311531, 3735928559, 4294967295]
def f(x): return x * 6364136223846793005 + 1442695040888963407
'''


@pytest.fixture(scope="module")
def stage() -> Pii:
    return Pii()


def run(stage: Pii, texts: list[str]):
    return stage.process(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))


@pytest.mark.parametrize("kind", list(PLANTED))
def test_each_kind_is_redacted_with_its_token(stage, kind):
    text = f"Write to the office. Details: {PLANTED[kind]} and nothing else."
    res = run(stage, [text])
    out = res.kept.column("text")[0].as_py()
    assert PLANTED[kind] not in out and TOKEN[kind] in out, out
    col = "pii_" + {"phone_us": "phone", "ipv6": "ip", "aws": "secret", "github": "secret"}.get(kind, kind)
    assert res.kept.column(col)[0].as_py() == 1


def test_invalid_numbers_and_private_addresses_are_left_alone(stage):
    text = ("Card 4111 1111 1111 1112 fails Luhn. IBAN DE89 3704 0044 0532 0130 01 fails mod 97. "
            "Router at 192.168.1.1 and loopback 127.0.0.1. See section 11.1.3.1 and 8.8.8.8.\n"
            "11.2.44.1. Heading with a large part")
    res = run(stage, [text])
    assert res.kept.column("text")[0].as_py() == text
    assert sum(res.kept.column(f"pii_{k}")[0].as_py() for k in ("credit_card", "iban", "ip", "phone")) == 0


def test_code_with_versions_hashes_and_constants_is_untouched(stage):
    res = run(stage, [CODE])
    assert res.kept.column("text")[0].as_py() == CODE


def test_private_key_block_is_redacted_whole(stage):
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\nabcDEF123+/=\n-----END RSA PRIVATE KEY-----"
    out = run(stage, [f"config:\n{pem}\nend"]).kept.column("text")[0].as_py()
    assert out == "config:\n<SECRET>\nend"


def test_reject_mode_and_custom_tokens():
    st = Pii(PiiConfig(action="reject", kinds=["email", "iban"]))
    res = run(st, [f"mail {PLANTED['email']} now", f"iban {PLANTED['iban']} and {PLANTED['email']}", "clean"])
    assert res.rejected.column("reject_reason").to_pylist() == ["pii:email", "pii:email"]
    assert res.kept.column("text").to_pylist() == ["clean"]
    st = Pii(PiiConfig(kinds=["email"], replacements={"email": "email@example.com"}))
    assert run(st, [f"to {PLANTED['email']}"]).kept.column("text")[0].as_py() == "to email@example.com"


def test_options_are_validated_before_work():
    base = {"input": {"paths": ["x.jsonl"]}, "output": {"path": "out"}}
    for opts, word in [({"kinds": ["ssn"]}, "kinds"), ({"action": "mask"}, "action"),
                       ({"phone_regions": ["ZZ"]}, "ZZ"), ({"kinds": ["ip", "ip"]}, "twice")]:
        with pytest.raises(ConfigError, match=word):
            parse_config({**base, "stages": [{"pii": opts}]})


def test_pickle_round_trip(stage):
    text = f"x {PLANTED['email']} y {PLANTED['credit_card']}"
    assert run(pickle.loads(pickle.dumps(stage)), [text]).kept.to_pylist() == run(stage, [text]).kept.to_pylist()


def test_curate_on_ray_with_the_new_stages(tmp_path, ray_cluster, corpus_rows, jsonl_writer):
    prose = [r for r in corpus_rows if r["source"] == "web-docs"]
    assert len(prose) >= 3
    passage = " ".join(prose[0]["text"].split()[:40])
    evals = tmp_path / "evalset.jsonl"
    evals.write_text(json.dumps({"question": passage}) + "\n")
    rows = [dict(r) for r in corpus_rows]
    rows.append(dict(prose[1], id="~contaminated", source="planted", text=prose[1]["text"] + "\n" + passage.replace(" ", "\n", 5)))
    rows.append(dict(prose[2], id="~pii", source="planted", text=prose[2]["text"] + f"\nContact {PLANTED['email']} or {PLANTED['iban']}."))
    inp = jsonl_writer(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    cfg = {"input": {"paths": [str(inp)], "unit_rows": 40}, "output": {"path": str(out)}, "progress": False,
           "ray": {"workers": 2},
           "stages": [{"normalize": {}},
                      {"multilingual_quality": {"only": {"source": ["web-docs"]}}},
                      {"decontaminate": {"eval_sets": [{"paths": [str(evals)], "fields": ["question"]}]}},
                      {"pii": {}}]}
    from pipeline.runner import run_pipeline

    m = run_pipeline(parse_config(cfg)).manifest
    assert m["accounting"]["ok"], m["accounting"]
    by = {s["stage"]: s for s in m["stages"]}
    assert by["multilingual_quality"]["docs_rejected"] > 0
    assert by["decontaminate"]["reasons"].get("contaminated:evalset", 0) >= 1
    assert by["pii"]["counts"]["pii_email"] >= 1 and by["pii"]["counts"]["pii_iban"] >= 1
    rej = pq.read_table(sorted(glob.glob(f"{out}.curation/rejected/*.parquet"))).to_pylist()
    assert all(r["reject_reason"] for r in rej)
    contaminated = {r["id"]: r for r in rej if r["reject_stage"] == "decontaminate"}
    assert "~contaminated" in contaminated
    assert contaminated["~contaminated"]["decontam_set"] == "evalset"
    assert len(contaminated["~contaminated"]["decontam_ngram"].split()) == 13
    kept = {r["id"]: r for r in pq.read_table(sorted(glob.glob(str(out / "part-*.parquet")))).to_pylist()}
    assert PLANTED["email"] not in kept["~pii"]["text"] and "<EMAIL>" in kept["~pii"]["text"]
    assert kept["~pii"]["pii_email"] == 1 and kept["~pii"]["pii_iban"] == 1


def _secret_alphabet() -> str:
    """Every character the detect-secrets patterns name, plus separators: random texts over it
    often hold a pattern's keywords, and sometimes a whole match."""
    from pipeline.stages.pii import _secret_patterns

    chars = set("=:'\"[] \n_-./@")
    for rx in _secret_patterns():
        chars |= {c for c in rx.pattern if c.isalnum()}
    return "".join(sorted(chars))


def test_secret_prefilter_never_skips_a_text_a_pattern_matches():
    """The required-literal test may only say no where the pattern finds nothing: random texts
    built from the patterns' own characters and keywords, and keyword-bearing assignments."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline.stages.pii import _prefiltered_secret_patterns

    patterns = _prefiltered_secret_patterns()
    assert sum(f is not None for _, f in patterns) >= len(patterns) - 3  # almost every pattern has one
    words = ["key", "KEY", "pass", "token", "ibm", "cloud", "iam", "cloudant", "secret", "aws", "sk_live_", "ghp_",
             "xoxb-", "AKIA", "glpat-", "SG.", "eyJ", "AccountKey=", "https://", "://u:p@h", "BEGIN RSA PRIVATE KEY"]
    piece = st.one_of(st.sampled_from(words), st.text(_secret_alphabet(), max_size=12),
                      st.text("abcdef0123456789", min_size=20, max_size=70))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(piece, max_size=12).map(" ".join))
    def check(text: str) -> None:
        for rx, may_match in patterns:
            if may_match is not None and not may_match(text):
                assert rx.search(text) is None, (rx.pattern, text)

    check()
    aws_key = 'aws_secret_access_key = "' + "A" * 40 + '"'
    ibm = "ibm_cloud_iam_api_key = " + "x" * 44
    for text in (aws_key, ibm, PLANTED["aws"], PLANTED["github"]):
        hits = [rx for rx, _ in patterns if rx.search(text)]
        assert hits and all(f is None or f(text) for rx, f in patterns if rx in hits), text
