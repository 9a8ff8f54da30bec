"""``python -m seqrec ...``; also the entry torchrun needs: ``torchrun ... -m seqrec train ...``."""

from seqrec.cli import main

if __name__ == "__main__":
    main()
