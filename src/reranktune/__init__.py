"""reranktune: domain-adapted cross-encoder rerankers from a folder of documents."""

__version__ = "0.1.0"
