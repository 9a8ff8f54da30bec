"""Tasks other than next-item retrieval: ``ranking`` (CTR: history + candidate -> P(positive))."""
