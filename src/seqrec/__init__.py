"""seqrec: sequential recommendation on real data with one honest evaluation protocol."""

__version__ = "0.1.0"
