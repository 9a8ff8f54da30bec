"""seqrec: sequential recommendation on real data with one honest evaluation protocol."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """A run folder (`seqrec train`) or a model package (`seqrec export`) -> a `Recommender`.

    Both are read by `seqrec.run.Run`, the one loader; a package's every file is checked
    against its sha256 first, and weights are only ever read from safetensors. Imported
    lazily, so `import seqrec` stays light (no torch).
    """
    from seqrec.run import load as _load

    return _load(path, device)
