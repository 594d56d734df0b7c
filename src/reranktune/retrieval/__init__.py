"""The first stage every pipeline stage shares: dense embeddings, BM25, fusion, and the runs they
give.

prep mines hard negatives with it, the reranker's prior carries its evidence, and eval and
the export gate rerank its candidates; ``params.yaml``'s ``retrieval`` section configures it.
"""
