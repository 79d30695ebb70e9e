"""Sequence tagging (NER) from weak sources: tag schemes, span metrics, label models, taggers."""

from metal.sequence.label_model import SequenceLabelModel, TokenMajorityVoter
from metal.sequence.metrics import SpanScores, span_scores
from metal.sequence.tags import Spans, TagScheme, extract_spans, spans_to_tags

__all__ = [
    "SequenceLabelModel",
    "SpanScores",
    "Spans",
    "TagScheme",
    "TokenMajorityVoter",
    "extract_spans",
    "span_scores",
    "spans_to_tags",
]
