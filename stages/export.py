"""DVC stage 'export': see `reranktune export --help` and src/reranktune/stages.py for its files."""
import sys

from reranktune.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
