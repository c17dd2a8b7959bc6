"""Language identification: ``lang`` (ISO 639-1, ``und`` when unsure) and ``lang_score`` per document.

Works offline out of the box with lingua (``lingua-language-detector``), whose models
ship in the wheel. Lingua is accurate but slow on long texts, so by default it reads a
text prefix (``prefix_chars``) in low-accuracy mode, batched across threads; on the
demo corpus that keeps language ID a few seconds per 30 MB (see docs/curation.md).
Give ``model_path`` to use fastText ``lid.176`` instead (needs ``pip install fasttext``).
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from pipeline.errors import ConfigError
from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage


class LangIdConfig(FilterConfig):
    backend: Literal["lingua", "fasttext"] = "lingua"
    model_path: str | None = Field(None, description="fastText lid.176.bin/.ftz; implies backend=fasttext")
    languages: list[str] | None = Field(None, description="keep only these ISO 639-1 codes (None keeps every language)")
    min_score: float = Field(0.0, ge=0, le=1, description="below this score a document is 'und'")
    prefix_chars: int | None = Field(2000, gt=0, description="detect on this many leading chars (None: whole text)")
    low_accuracy: bool = Field(True, description="lingua's low-accuracy mode (much faster, fine above ~120 chars)")
    candidates: list[str] | None = Field(None, description="restrict lingua to these ISO 639-1 codes (faster)")
    column: str = "lang"
    score_column: str = "lang_score"
    threads: int | None = Field(None, gt=0, description="not used by lingua, which uses all cores of its worker")


@register_stage
class LangId(Filter):
    """Detect each document's language and keep the configured ones."""

    name = "langid"
    Config = LangIdConfig

    def __init__(self, config: LangIdConfig | None = None):
        super().__init__(config)
        c: LangIdConfig = self.config  # type: ignore[assignment]
        if c.model_path is not None:
            c.backend = "fasttext"
        if c.backend == "fasttext":
            if c.model_path is None:
                raise ConfigError("langid.model_path: the fastText backend needs a lid.176 model path")
            try:
                import fasttext  # noqa: F401
            except ImportError:
                raise ConfigError("langid: the fastText backend needs the fasttext package "
                                  "(pip install fasttext)") from None
        self.signal_types = {c.column: pa.string(), c.score_column: pa.float32()}
        self._detector: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_detector"] = None  # rebuilt lazily in each worker
        return state

    def _lingua(self):
        if self._detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            c: LangIdConfig = self.config  # type: ignore[assignment]
            if c.candidates:
                codes = [getattr(IsoCode639_1, x.upper()) for x in c.candidates]
                builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
            else:
                builder = LanguageDetectorBuilder.from_all_languages()
            if c.low_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detector = builder.build()
        return self._detector

    def _fasttext(self):
        if self._detector is None:
            import fasttext

            self._detector = fasttext.load_model(self.config.model_path)  # type: ignore[attr-defined]
        return self._detector

    def detect(self, texts: list[str]) -> tuple[list[str], list[float]]:
        """Language codes and scores for a list of texts."""
        c: LangIdConfig = self.config  # type: ignore[assignment]
        if c.prefix_chars:
            texts = [t[: c.prefix_chars] for t in texts]
        langs: list[str] = []
        scores: list[float] = []
        if c.backend == "fasttext":
            model = self._fasttext()
            labels, probs = model.predict([t.replace("\n", " ") for t in texts], k=1)
            for lab, p in zip(labels, probs):
                langs.append(lab[0].removeprefix("__label__") if lab else "und")
                scores.append(float(p[0]) if len(p) else 0.0)
        else:
            det = self._lingua()
            for values in det.compute_language_confidence_values_in_parallel(texts):
                if values and values[0].value > 0:
                    langs.append(values[0].language.iso_code_639_1.name.lower())
                    scores.append(float(values[0].value))
                else:
                    langs.append("und")
                    scores.append(0.0)
        langs = [lang if s >= c.min_score else "und" for lang, s in zip(langs, scores)]
        return langs, scores

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        c: LangIdConfig = self.config  # type: ignore[assignment]
        langs, scores = self.detect(table.column("text").to_pylist())
        allowed = set(c.languages) if c.languages is not None else None
        reasons = [None if allowed is None or lang in allowed else f"lang_{lang}" for lang in langs]
        return FilterOutput(reasons, {c.column: langs, c.score_column: scores})
