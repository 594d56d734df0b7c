"""Stage 3: first-stage retrieval, then reranking, measured on a BEIR folder."""
