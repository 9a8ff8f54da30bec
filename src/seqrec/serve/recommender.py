"""`Recommender`, `Query` and `Answer` moved to `seqrec.run.recommender` (the run layer
returns them, and the server sits above it); this name stays for existing imports."""

from seqrec.run.recommender import Answer, Query, Recommender

__all__ = ["Answer", "Query", "Recommender"]
