"""``python -m seqrec.cli ...`` (benchmarks/serving.py starts the server this way)."""

from seqrec.cli import main

if __name__ == "__main__":
    main()
