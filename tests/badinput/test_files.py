"""Bad data files, as a user meets them: `seqrec data stats FILE`, `seqrec train` and the API.

Each file gets one line naming the file (and the line or row where that helps), what is wrong
and the fix, exit 2, and no run folder or other output left behind: a data error is found
before anything is written (``data stats`` and ``train`` share one reader, so a file refused
by one is refused by the other).
"""

from __future__ import annotations

import gzip

import pytest

import seqrec
from conftest import gzip_cut, gzip_flipped, parquet_bytes, tiny_config

from .harness import case

CSV = "user_id,item_id,timestamp\n1,2,5\n1,4,6\n2,2,7\n"


_PARQUET = parquet_bytes(user_id=[1, 2], item_id=[3, 4])
# a sorted `user item timestamp` log with one row per user and small integer times: rows of
# (user, item, time) and one user per line fit equally well, so seqrec must not pick one
_ONE_ROW_EACH = "".join(f"{u} {100 + u} {u}\n" for u in range(1, 60))
# users repeat (so not one user per line), but the third field runs backwards in a user
_BACKWARDS = "1 10 3\n1 11 2\n2 10 4\n2 12 5\n"
# users repeat and one line is ragged: neither reading fits
_RAGGED_REPEAT = "1 2\n1 3\n2 4 5 6 7 8\n"

FILES = [
    # (file name, content, extra `-o` overrides, words the message must hold)
    case("files", "a-NaN-timestamp-names-file-and-line", "nan.csv", CSV + "1,3,nan\n", [],
         ["nan.csv line 5", "timestamp nan is not a finite"]),
    case("files", "an-inf-timestamp-names-file-and-line", "inf.csv", CSV + "1,3,inf\n", [],
         ["inf.csv line 5", "timestamp inf"]),
    case("files", "a-negative-timestamp-is-refused", "neg.csv", CSV + "1,3,-4\n", [],
         ["neg.csv line 5", "timestamp -4 is negative"]),
    case("files", "an-overflowing-timestamp-is-refused", "huge.csv",
         CSV + "1,3,99999999999999999999\n", [], ["huge.csv line 5", "is past"]),
    case("files", "a-timestamp-past-year-3000-in-a-pairs-file", "late.txt",
         "1 2 978300760\n1 3 40000000000000\n", ["data.format=pairs"], ["late.txt line 2"]),
    case("files", "a-NaN-timestamp-in-parquet-names-the-row", "nan.parquet",
         parquet_bytes(user_id=[1, 2], item_id=[3, 4], timestamp=[1.0, float("nan")]), [],
         ["nan.parquet row 2", "timestamp nan"]),
    case("files", "an-unparseable-timestamp-names-the-line", "when.csv",
         CSV + "1,3,yesterday\n", [], ["when.csv", "yesterday"]),
    case("files", "an-unparseable-item-id-in-ratings-dat", "ids.dat",
         "1::2::5::978300760\n1::x7::5::978300761\n", ["data.format=ml-dat"],
         ["ids.dat line 2", "item id 'x7'"]),
    case("files", "a-missing-user-id-names-the-line", "noid.csv", CSV + ",3,6\n", [],
         ["noid.csv line 5", "no user id"]),
    case("files", "a-ragged-line-in-a-pairs-file", "rag.txt", "1 2\n1 3\n2 3 4\n",
         ["data.format=pairs"], ["rag.txt line 3", "3 fields where line 1 has 2"]),
    case("files", "a-ragged-line-in-ratings-dat", "rag.dat", "1::2::5::978300760\n1::3::5\n",
         ["data.format=ml-dat"], ["rag.dat line 2"]),
    case("files", "a-ragged-line-in-a-csv", "rag.csv", CSV + "1,3,6,7\n", [],
         ["rag.csv line 5", "4 fields where the header has 3"]),
    case("files", "a-one-row-per-user-log-is-ambiguous-not-guessed", "sorted.txt", _ONE_ROW_EACH,
         [], ["sorted.txt", "cannot tell the format", "data.format"]),
    case("files", "a-third-field-that-runs-backwards-is-not-taken-for-time", "back.txt",
         _BACKWARDS, [], ["back.txt", "goes back", "data.format=pairs"]),
    case("files", "a-ragged-file-fits-neither-reading", "ragrep.txt", _RAGGED_REPEAT, [],
         ["ragrep.txt", "no format fits", "data.format=seq"]),
    case("files", "a-truncated-gzip", "cut.txt.gz", gzip_cut("1 2 978300760\n" * 50_000, 0.5),
         [], ["cut.txt.gz is a truncated gzip"]),
    case("files", "a-tiny-truncated-gzip-is-not-Aborted", "tiny.txt.gz",
         gzip_cut("1 2\n1 3\n", 0.7), [], ["tiny.txt.gz is a truncated gzip"]),
    case("files", "a-corrupt-gzip", "bad.txt.gz", gzip_flipped(), [],
         ["bad.txt.gz is a corrupt gzip"]),
    case("files", "an-empty-gzip", "empty.txt.gz", gzip.compress(b""), [],
         ["empty.txt.gz is empty once decompressed"]),
    case("files", "a-truncated-parquet", "cut.parquet", _PARQUET[:-20], [],
         ["cut.parquet is not a readable Parquet file"]),
    case("files", "a-parquet-with-a-zeroed-middle", "mid.parquet",
         _PARQUET[:8] + b"\0" * 40 + _PARQUET[48:], [], ["mid.parquet is not a readable"]),
    case("files", "text-read-as-parquet", "fake.parquet", b"not parquet at all", [],
         ["fake.parquet is not a readable Parquet file"]),
    case("files", "a-bzip2-file", "log.bz2", b"BZh91AY&SY" + b"x" * 30, [],
         ["log.bz2 is bzip2-compressed"]),
    case("files", "a-zip-file", "log.zip", b"PK\x03\x04" + b"x" * 30, [],
         ["log.zip is zip-compressed"]),
    case("files", "an-empty-file", "empty.txt", b"", [], ["empty.txt is empty"]),
    case("files", "a-file-of-blank-lines", "blank.txt", "\n  \n\n", [], ["blank.txt is empty"]),
    case("files", "a-csv-with-only-a-header", "head.csv", "user_id,item_id\n", [],
         ["head.csv holds no interactions"]),
    case("files", "a-file-of-single-ids", "ids.txt", "1\n2\n3\n", [],
         ["ids.txt", "one field", "data.dataset"]),
    case("files", "a-header-less-csv", "nohead.csv", "1,2,5\n1,3,6\n", [],
         ["nohead.csv", "not a header"]),
    case("files", "columns-that-are-not-in-the-file", "cols.csv", CSV,
         ["data.user_col=uid"], ["cols.csv", "uid", "not found"]),
    case("files", "a-time-column-that-is-not-in-the-file", "notime.csv", CSV,
         ["data.time_col=ts"], ["notime.csv", "'ts' not found"]),
    case("files", "a-two-character-separator", "sep.csv", CSV, ["data.sep=;;"],
         ["data.sep must be one character"]),
    case("files", "a-pairs-file-read-as-ratings-dat", "pairs.txt", "1 2 978300760\n1 3 978300761\n",
         ["data.format=ml-dat"], ["pairs.txt", "ratings.dat"]),
    case("files", "a-rating-column-asked-of-a-sequence-file", "seq.txt", "1 2 3 4\n2 3 4 5\n",
         ["data.format=seq", "data.behavior_col=rating"], ["data.behavior_col", "seq format"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "overrides", "says"), FILES)
def test_data_stats_refuses_the_file(user, name, content, overrides, says):
    path = user.write(name, content)
    opts = [a for o in overrides for a in ("-o", o)]
    user.cli_fails("data", "stats", path, *opts, says=says)


PLACES = [
    case("files", "a-directory-given-as-the-data-file", "folder",
         ["folder has no ratings.dat", "pass the data file itself"]),
    case("files", "a-data-file-that-does-not-exist", "missing.csv",
         ["missing.csv does not exist", "data.dataset"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "says"), PLACES)
def test_data_stats_refuses_what_is_not_a_file(user, name, says):
    if name == "folder":
        user.folder(name)
    user.cli_fails("data", "stats", user.root / name, says=says)


TRAIN = [
    # a bad file given to `seqrec train`: refused before the run folder exists
    case("files", "train-on-a-NaN-timestamp-leaves-no-run-folder", "nan.csv",
         CSV + "1,3,nan\n", ["nan.csv line 5"]),
    case("files", "train-on-a-truncated-gzip-leaves-no-run-folder", "cut.txt.gz",
         gzip_cut("1 2 978300760\n" * 50_000, 0.5), ["truncated gzip"]),
    case("files", "train-on-an-ambiguous-log-leaves-no-run-folder", "sorted.txt", _ONE_ROW_EACH,
         ["cannot tell the format"]),
    case("files", "train-on-sequences-too-short-to-split", "short.csv",
         "user_id,item_id,timestamp\n1,2,5\n2,3,6\n3,4,7\n", ["leave-one-out needs >= 3 interactions"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "says"), TRAIN)
def test_train_refuses_the_file_before_writing(user, name, content, says):
    path = user.write(name, content)
    cfg = user.yaml("tiny.yaml", tiny_config(path))
    user.cli_fails("train", "-c", cfg, "--out", user.root / "run", "--no-progress", says=says)


API = [
    case("files", "api-config-and-train-on-an-inf-timestamp", "inf.csv", CSV + "1,3,inf\n",
         ["inf.csv line 5"]),
    case("files", "api-train-on-a-corrupt-gzip", "bad.txt.gz", gzip_flipped(),
         ["corrupt gzip"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "says"), API)
def test_api_train_refuses_the_file(user, name, content, says):
    path = user.write(name, content)
    cfg = seqrec.config(None, **tiny_config(path))
    user.api_fails(lambda: seqrec.train(cfg, user.root / "run", progress=False), says=says)
