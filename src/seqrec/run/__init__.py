"""One run artifact: the run layer, above training and below serving.

`Run` (artifact.py) owns a run folder or a model package and is the only code that loads a
model from saved weights, for evaluation, recommendation, serving and export; `Recommender`
(recommender.py) is what it loads into; package.py is the package format it reads and writes.
"""

from seqrec.run.artifact import Run, load, load_package, train
from seqrec.run.recommender import Answer, Query, Recommender

__all__ = ["Answer", "Query", "Recommender", "Run", "load", "load_package", "train"]
