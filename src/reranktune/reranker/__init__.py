"""The reranker: a cross-encoder folder, its saved recipe and prior, scored on the backend the
caller picks."""

from reranktune.reranker.model import RankResult, Reranker

__all__ = ["RankResult", "Reranker"]
