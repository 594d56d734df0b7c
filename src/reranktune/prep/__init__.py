"""Stage 1: SDG records -> training file with hard negatives + BEIR test set."""
