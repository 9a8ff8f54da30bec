"""The bad-input suite: seqrec used wrongly, as a person would, through the CLI, the Python API
and HTTP (issue 22). A package, so its conftest and harness never shadow ``tests/conftest.py``
(``from conftest import ...`` elsewhere keeps meaning the shared fixtures)."""
