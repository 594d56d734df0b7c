"""Stage 5: the NIM-compatible ranking API (``POST /v1/ranking``) on an exported reranker."""
