"""Item and user side information, parsed with the stdlib + numpy and aligned to a store's ids.

Metadata files are small (thousands of rows), so they are parsed on every load instead of being
cached; that keeps polars (absent on some training machines) out of this path entirely.

Conventions every consumer relies on:

* An item table has ``n_items + 1`` rows indexed by the store's internal item id; row 0 is PAD.
  A user table has ``n_users`` rows indexed by store row (no PAD row).
* ``categorical``: int64 [R], id 0 = unknown (PAD, an item without metadata, or a value not in
  the vocabulary, e.g. a category first seen at inference). Real values are 1..vocab-1.
* ``multi``: int64 [R, K], right-padded with 0 = none (genres, Amazon attributes, hashed title
  words). Same id space as categorical.
* ``numeric``: float32 [R], standardised over the rows that have a value; unknown = 0 (the mean).
* ``vector``: float32 [R, d] (precomputed text embeddings); unknown = zeros.

Vocabularies come from the *sorted* set of values in the file, never from file order, so a
shuffled metadata file gives identical arrays (tested).

One reader per source (`movielens`, `s3rec` for Amazon, `npz` for text vectors) turns a file
into `records.RawRecords`; `readers` picks the reader by file name; `alignment` maps records
onto the store's ids; `load` is what the pipeline calls with a `DataConfig`.
"""

from __future__ import annotations

from seqrec.data.features.alignment import align
from seqrec.data.features.fields import FeatureField, Features, ItemFeatures, Kind, UserFeatures
from seqrec.data.features.load import (
    ITEM_FILES,
    USER_FILES,
    load_item_features,
    load_user_features,
)
from seqrec.data.features.movielens import title_tokens
from seqrec.data.features.readers import READERS, parse_file, reader_for
from seqrec.data.features.records import TITLE_BUCKETS, RawRecords

__all__ = [
    "ITEM_FILES",
    "READERS",
    "TITLE_BUCKETS",
    "USER_FILES",
    "FeatureField",
    "Features",
    "ItemFeatures",
    "Kind",
    "RawRecords",
    "UserFeatures",
    "align",
    "load_item_features",
    "load_user_features",
    "parse_file",
    "reader_for",
    "title_tokens",
]
