"""DVC stage 'prep': see `reranktune prep --help` and src/reranktune/stages.py for its files."""
import sys

from reranktune.cli import main

if __name__ == "__main__":
    sys.exit(main(["prep", *sys.argv[1:]]))
