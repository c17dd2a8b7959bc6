"""A cheap CPU quality classifier: a linear model on hashed n-grams, trained on judge labels.

The LLM judge is accurate but costs a GPU forward pass per document; the
FineWeb-Edu recipe labels a sample with the judge and distils it into a cheap
model that scores the whole corpus. Here that model is ridge regression on
signed-hashed word n-grams (the hashing trick: no vocabulary to store, constant
memory), fitted by full-batch AdaGrad in numpy. It predicts the 0-5 score
directly, so the same ``threshold`` works for judge and classifier.

CJK characters count as words of their own (those scripts have no spaces).
Features are log-scaled counts, L2-normalised per document.

>>> clf = HashedNgramClassifier(dim_bits=12)
>>> metrics = clf.fit(["great tutorial on algebra"] * 4 + ["buy cheap now"] * 4, [4.0] * 4 + [0.0] * 4, epochs=50)
>>> bool(clf.predict(["an algebra tutorial"])[0] > clf.predict(["cheap, buy now"])[0])
True
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import xxhash

from common.errors import TrinityError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+", re.UNICODE)


class ClassifierError(TrinityError):
    """A classifier file is missing or corrupt, or training data is unusable."""


class HashedNgramClassifier:
    """Ridge regression over signed-hashed word n-grams.

    Args:
        dim_bits: log2 of the feature space (20 -> 1,048,576 weights, 4 MiB).
        ngram: longest word n-gram (1 = bag of words).
        l2: ridge penalty.
        max_chars: only the first ``max_chars`` characters of a document are featurised.
    """

    def __init__(self, dim_bits: int = 20, ngram: int = 2, l2: float = 1e-4, max_chars: int = 20_000):
        if not 8 <= dim_bits <= 26:
            raise ValueError(f"dim_bits must be in [8, 26], got {dim_bits}")
        self.dim_bits = dim_bits
        self.ngram = ngram
        self.l2 = l2
        self.max_chars = max_chars
        self.weights = np.zeros(1 << dim_bits, dtype=np.float32)
        self.bias = 0.0
        self.metrics: dict = {}

    @property
    def dim(self) -> int:
        return 1 << self.dim_bits

    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        toks = _TOKEN.findall(text[: self.max_chars].lower())
        counts: dict[int, float] = {}
        mask = self.dim - 1
        for n in range(1, self.ngram + 1):
            for i in range(len(toks) - n + 1):
                h = xxhash.xxh64_intdigest(" ".join(toks[i : i + n]).encode("utf-8"))
                idx = h & mask
                sign = 1.0 if (h >> 63) & 1 else -1.0
                counts[idx] = counts.get(idx, 0.0) + sign
        if not counts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx = np.fromiter(counts.keys(), np.int64, len(counts))
        val = np.fromiter(counts.values(), np.float64, len(counts))
        val = np.sign(val) * np.log1p(np.abs(val))
        norm = np.linalg.norm(val)
        if norm > 0:
            val /= norm
        return idx, val.astype(np.float32)

    def _matrix(self, texts: Sequence[str]):
        feats = [self._features(t) for t in texts]
        lens = np.array([len(i) for i, _ in feats], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lens)])
        indices = np.concatenate([i for i, _ in feats]) if feats else np.zeros(0, np.int64)
        data = np.concatenate([v for _, v in feats]) if feats else np.zeros(0, np.float32)
        return indices, data, indptr, lens

    @staticmethod
    def _dot(w, indices, data, indptr, lens):
        prod = data * w[indices]
        out = np.zeros(len(lens), dtype=np.float64)
        nz = lens > 0
        if prod.size:
            out[nz] = np.add.reduceat(prod, indptr[:-1][nz])
        return out

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[float],
        *,
        epochs: int = 200,
        lr: float = 0.5,
        valid_fraction: float = 0.1,
        threshold: float = 3.0,
        seed: int = 0,
    ) -> dict:
        """Train on judge labels; returns metrics on a held-out split (MSE, accuracy at ``threshold``).

        Raises:
            ClassifierError: fewer than 2 labelled documents, or labels that are not finite.
        """
        y_all = np.asarray(labels, dtype=np.float64)
        if len(texts) != len(y_all):
            raise ClassifierError(f"{len(texts)} texts but {len(y_all)} labels")
        if len(y_all) < 2 or not np.all(np.isfinite(y_all)):
            raise ClassifierError("need at least 2 documents with finite labels to train")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y_all))
        n_valid = int(len(order) * valid_fraction) if len(order) >= 20 else 0
        valid, train = order[:n_valid], order[n_valid:]
        Xtr = self._matrix([texts[i] for i in train])
        ytr = y_all[train]
        w = np.zeros(self.dim, dtype=np.float64)
        b = float(ytr.mean())
        g2 = np.full(self.dim, 1e-8)
        n = len(ytr)
        indices, data, indptr, lens = Xtr
        row_of = np.repeat(np.arange(n), lens)
        for _ in range(epochs):
            resid = self._dot(w, *Xtr) + b - ytr
            grad = np.bincount(indices, weights=data * resid[row_of], minlength=self.dim) / n + self.l2 * w
            g2 += grad * grad
            w -= lr * grad / np.sqrt(g2)
            b -= lr * 0.1 * float(resid.mean())
        self.weights = w.astype(np.float32)
        self.bias = b
        train_pred = self.predict([texts[i] for i in train])
        metrics = {"n_train": int(n), "n_valid": int(n_valid), "train_mse": float(np.mean((train_pred - ytr) ** 2))}
        if n_valid:
            vp = self.predict([texts[i] for i in valid])
            yv = y_all[valid]
            metrics["valid_mse"] = float(np.mean((vp - yv) ** 2))
            metrics["valid_accuracy_at_threshold"] = float(np.mean((vp >= threshold) == (yv >= threshold)))
        metrics["threshold"] = threshold
        self.metrics = metrics
        return metrics

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Predicted 0-5 scores (clipped), one per text."""
        if not len(texts):
            return np.zeros(0, dtype=np.float32)
        X = self._matrix(texts)
        pred = self._dot(self.weights.astype(np.float64), *X) + self.bias
        return np.clip(pred, 0.0, 5.0).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` file (weights, bias and a JSON header)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(
            format_version=FORMAT_VERSION, dim_bits=self.dim_bits, ngram=self.ngram, l2=self.l2,
            max_chars=self.max_chars, bias=self.bias, metrics=self.metrics,
        )
        with open(path, "wb") as f:
            np.savez_compressed(f, weights=self.weights, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HashedNgramClassifier":
        """Read a file written by :meth:`save`.

        Raises:
            ClassifierError: naming the file and what is wrong with it.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                weights = z["weights"]
        except FileNotFoundError:
            raise ClassifierError(f"{path}: classifier file not found") from None
        except Exception as exc:
            raise ClassifierError(f"{path}: not a quality-classifier file ({type(exc).__name__}: {exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(f"{path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
        clf = cls(dim_bits=meta["dim_bits"], ngram=meta["ngram"], l2=meta["l2"], max_chars=meta["max_chars"])
        if weights.shape != (clf.dim,):
            raise ClassifierError(f"{path}: weights have shape {weights.shape}, expected ({clf.dim},)")
        clf.weights = weights.astype(np.float32)
        clf.bias = float(meta["bias"])
        clf.metrics = meta.get("metrics", {})
        return clf
