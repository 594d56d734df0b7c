"""Stage 0: synthetic question/answer generation from documents."""
