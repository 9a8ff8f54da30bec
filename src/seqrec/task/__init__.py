"""Run-folder entry points of the ranking task that the CLI imports (see ``ranking.py``); the
task itself is ``seqrec.tasks.ranking``."""
