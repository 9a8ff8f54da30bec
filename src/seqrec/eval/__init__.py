"""Evaluation: full-ranking (default) and sampled metrics from exact ranks (`ranking`),
metrics from ranks (`metrics`), CTR metrics (`ctr`), confidence intervals and paired tests
(`stats`). Import the submodule you need: this package imports nothing at import time, so
`seqrec.eval.stats` (numpy and scipy) never pulls in torch."""
