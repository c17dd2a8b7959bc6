"""The heuristic rule sets under their former module name (imports written before the split).

Each rule set now has its own module: ``gopher_quality``, ``gopher_repetition``, ``c4``,
``fineweb``, and ``quality`` (all four as one stage).
"""

from pipeline.stages.filters._doc import Doc
from pipeline.stages.filters.c4 import C4Config, C4Quality, C4Rules
from pipeline.stages.filters.fineweb import FineWebConfig, FineWebQuality, FineWebRules
from pipeline.stages.filters.gopher_quality import GopherQuality, GopherQualityConfig, GopherQualityRules
from pipeline.stages.filters.gopher_repetition import (
    GopherRepetition,
    GopherRepetitionConfig,
    GopherRepetitionRules,
)
from pipeline.stages.filters.quality import Quality, QualityConfig
from pipeline.stages.filters.rule_set import RuleResult, RuleSetFilter

__all__ = [
    "C4Config", "C4Quality", "C4Rules", "Doc", "FineWebConfig", "FineWebQuality", "FineWebRules", "GopherQuality",
    "GopherQualityConfig", "GopherQualityRules", "GopherRepetition", "GopherRepetitionConfig",
    "GopherRepetitionRules", "Quality", "QualityConfig", "RuleResult", "RuleSetFilter",
]
