"""DVC stage 'finetune': see `reranktune finetune --help` and src/reranktune/stages.py for its files."""
import sys

from reranktune.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
