"""The package version, at the bottom of the import layers so that any module may write it
into the files it creates (run manifests, packages, the server's /health) without importing
the package root."""

__version__ = "0.1.0"
