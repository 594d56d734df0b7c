"""DVC stage 'eval': see `reranktune eval --help` and src/reranktune/stages.py for its files."""
import sys

from reranktune.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
