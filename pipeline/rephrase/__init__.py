"""Synthetic rephrasing and model-based quality scoring.

Importing this package registers three stages for curate configs:

- ``rephrase``: rewrite documents with an LLM in versioned prompt styles
  (:mod:`pipeline.rephrase.styles`), chunked to fit the context, outputs validated;
- ``score``: an LLM judge's 0-5 educational score in a ``quality`` column, filtered by threshold;
- ``quality_classifier``: a hashed n-gram linear model trained on judge labels, for the full corpus on CPU.

Engines (:mod:`pipeline.rephrase.engines`): ``transformers``, ``openai`` (HTTP) and
``vllm``. Nothing heavy (torch, transformers, vllm, httpx) is imported here.
"""

from .classifier import ClassifierError, HashedNgramClassifier
from .engines import (
    Engine,
    Generation,
    OpenAIEngineConfig,
    SamplingConfig,
    TransformersEngineConfig,
    VLLMEngineConfig,
    build_engine,
)
from .errors import (
    EngineDeadError,
    EngineError,
    EngineOOMError,
    EngineRequestError,
    EngineTimeoutError,
    StageInputError,
)
from .stages import (
    QualityClassifierConfig,
    QualityClassifierStage,
    RephraseConfig,
    RephraseStage,
    ScoreConfig,
    ScoreStage,
    derive_seed,
)
from .styles import Style, StyleLibrary

__all__ = [
    "ClassifierError",
    "Engine",
    "EngineDeadError",
    "EngineError",
    "EngineOOMError",
    "EngineRequestError",
    "EngineTimeoutError",
    "Generation",
    "HashedNgramClassifier",
    "OpenAIEngineConfig",
    "QualityClassifierConfig",
    "QualityClassifierStage",
    "RephraseConfig",
    "RephraseStage",
    "SamplingConfig",
    "ScoreConfig",
    "ScoreStage",
    "StageInputError",
    "Style",
    "StyleLibrary",
    "TransformersEngineConfig",
    "VLLMEngineConfig",
    "build_engine",
    "derive_seed",
]
