"""DVC stage 'sdg': see `reranktune sdg --help` and src/reranktune/stages.py for its files."""
import sys

from reranktune.cli import main

if __name__ == "__main__":
    sys.exit(main(["sdg", *sys.argv[1:]]))
