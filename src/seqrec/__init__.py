"""seqrec: sequential recommendation on real data with one honest evaluation protocol."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a model package written by `seqrec export` -> a `Recommender`.

    Checks every file's sha256 and refuses anything but safetensors weights. Imported lazily,
    so `import seqrec` stays light (no torch).
    """
    from seqrec.package import load as _load

    return _load(path, device)
