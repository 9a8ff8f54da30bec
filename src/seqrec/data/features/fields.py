"""Aligned feature tables: what `load_item_features` / `load_user_features` return and every
model-side consumer reads (conventions in the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from seqrec.errors import SeqrecError

Kind = Literal["categorical", "multi", "numeric", "vector"]


@dataclass(frozen=True)
class FeatureField:
    """One aligned feature column. ``vocab`` = number of ids including 0 (categorical, multi),
    or the vector width (numeric: 1)."""

    name: str
    kind: Kind
    values: np.ndarray
    vocab: int
    labels: tuple[str, ...] | None = None
    """Value name of each id (``labels[i]``; ``labels[0]`` is the unknown placeholder) for
    vocabulary fields; None for hashed and numeric fields. Lets a model map values across
    datasets by name (SRT)."""
    raw: np.ndarray | None = None
    """Numeric fields: the un-standardised values (NaN = unknown), e.g. the year itself."""


@dataclass(frozen=True)
class Features:
    """Named aligned fields of one entity (items or users) plus where they came from."""

    fields: dict[str, FeatureField]
    n_rows: int
    source: str
    coverage: float
    """Fraction of real rows (items 1..N or all users) that had a metadata record."""
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> FeatureField:
        return self.fields[name]

    def names(self) -> list[str]:
        return list(self.fields)

    def select(self, names: list[str] | None) -> Features:
        """Keep ``names`` (None = all); a name the file does not provide is a one-line error."""
        if names is None:
            return self
        missing = [n for n in names if n not in self.fields]
        if missing:
            raise SeqrecError(
                f"feature(s) {missing} not found in {self.source}; it provides {self.names()}"
            )
        return Features({n: self.fields[n] for n in names}, self.n_rows, self.source, self.coverage)

    def merge(self, other: Features) -> Features:
        clash = set(self.fields) & set(other.fields)
        if clash:
            raise SeqrecError(f"feature name(s) {sorted(clash)} come from two files; rename one")
        return Features(
            {**self.fields, **other.fields},
            self.n_rows,
            f"{self.source} + {other.source}",
            min(self.coverage, other.coverage),
        )


ItemFeatures = Features
UserFeatures = Features
