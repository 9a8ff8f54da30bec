"""Readers: every format, gzip, encodings, id typing and every bad-input message."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from seqrec.data.ingest import detect_format, read_interactions
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


def write(tmp_path, name: str, content: str | bytes, gz: bool = False):
    data = content.encode("utf-8") if isinstance(content, str) else content
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def rows(inter) -> list[tuple]:
    return list(inter.frame.select("user", "item", "ts").iter_rows())


@pytest.mark.parametrize("gz", [False, True])
def test_seq_plain_and_gzip(tmp_path, gz):
    path = write(tmp_path, "s.txt", "1 5 3 9\n2 7\n\n3  4\t8\n", gz=gz)
    inter = read_interactions(path)
    assert inter.format == "seq" and not inter.has_timestamps
    assert rows(inter) == [(1, 5, 0), (1, 3, 1), (1, 9, 2), (2, 7, 0), (3, 4, 0), (3, 8, 1)]
    assert inter.frame["order"].to_list() == list(range(6))
    assert inter.frame.schema["user"] == pl.Int64 and inter.frame.schema["ts"] == pl.Int64


def test_pairs_two_three_and_four_columns(tmp_path):
    two = read_interactions(write(tmp_path, "a.txt", "1 10\n1 11\n2 10\n"), "pairs")
    assert rows(two) == [(1, 10, 0), (1, 11, 1), (2, 10, 0)] and not two.has_timestamps
    three = read_interactions(write(tmp_path, "b.txt", "u1 i1 300\nu1 i2 100\n"), "pairs")
    assert rows(three) == [("u1", "i1", 300), ("u1", "i2", 100)] and three.has_timestamps
    udata = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", gz=True)
    four = read_interactions(udata)
    assert four.format == "pairs" and rows(four) == [(196, 242, 881250949), (186, 302, 891717742)]
    untimed = read_interactions(udata, "auto", DataConfig(time_col=None))
    assert rows(untimed) == [(196, 242, 0), (186, 302, 0)] and not untimed.has_timestamps


def test_ml_dat_reader(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    inter = read_interactions(path)
    assert inter.format == "ml-dat" and inter.has_timestamps
    assert rows(inter) == [(1, 1193, 978300760), (1, 661, 978302109)]


def test_movielens_ratings_csv_maps_columns(tmp_path):
    text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n"
    inter = read_interactions(write(tmp_path, "ratings.csv", text, gz=True))
    assert inter.format == "csv" and rows(inter) == [(1, 31, 1260759144), (1, 1029, 1260759179)]


@pytest.mark.parametrize("sep", [",", "\t", ";", "|"])
def test_csv_named_columns_and_sniffed_separator(tmp_path, sep):
    text = sep.join(["who", "what", "when"]) + "\n" + sep.join(["a", "x", "5"]) + "\n"
    cfg = DataConfig(user_col="who", item_col="what", time_col="when")
    inter = read_interactions(write(tmp_path, "f.csv", text), "auto", cfg)
    assert rows(inter) == [("a", "x", 5)]


def test_csv_explicit_sep_and_no_time_column(tmp_path):
    path = write(tmp_path, "f.txt", "user_id:item_id\n1:2\n1:3\n")
    inter = read_interactions(path, "csv", DataConfig(sep=":"))
    assert rows(inter) == [(1, 2, 0), (1, 3, 1)] and not inter.has_timestamps


def test_csv_datetime_strings_become_epoch_seconds(tmp_path):
    text = "user_id,item_id,timestamp\n1,2,1970-01-01 00:01:00\n"
    assert rows(read_interactions(write(tmp_path, "d.csv", text))) == [(1, 2, 60)]


def test_parquet_reader(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"u": ["a", "b"], "i": [3, 4], "t": [1.5, 2.0]}).write_parquet(path)
    inter = read_interactions(path, "auto", DataConfig(user_col="u", item_col="i", time_col="t"))
    assert inter.format == "parquet" and rows(inter) == [("a", 3, 1), ("b", 4, 2)]


def test_latin1_bytes_and_non_canonical_ids_stay_text(tmp_path):
    data = "user_id,item_id\ncaf\xe9,007\ncaf\xe9,7\n".encode("latin-1")
    inter = read_interactions(write(tmp_path, "l.csv", data))
    assert rows(inter) == [("café", "007", 0), ("café", "7", 1)]


def test_detect_format_heuristics(tmp_path):
    assert detect_format(write(tmp_path, "a.txt", "1 2 3 4 5 6\n2 3\n")) == "seq"
    assert detect_format(write(tmp_path, "b.txt", "1 2\n1 3\n2 3\n")) == "pairs"
    assert detect_format(write(tmp_path, "c.txt", "1 2 978300760\n2 3 978300761\n")) == "pairs"
    # three small numbers per line, each user once: nothing says which reading is right
    with pytest.raises(SeqrecError, match=r"data.format=pairs.*data.format=seq"):
        detect_format(write(tmp_path, "d.txt", "1 2 3\n2 3 4\n"))
    assert detect_format(write(tmp_path, "e.txt", "1::2::3::4\n")) == "ml-dat"
    assert detect_format(write(tmp_path, "f.tsv", "user\titem\n1\t2\n")) == "csv"


# ---- bad input: every message names the problem and the fix ---------------------------------


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(SeqrecError, match=r"does not exist.*check data.dataset"):
        read_interactions(tmp_path / "nope.txt")
    with pytest.raises(SeqrecError, match=r"is empty; point data.dataset"):
        read_interactions(write(tmp_path, "e.txt", "\n  \n"))
    with pytest.raises(SeqrecError, match=r"is empty"):
        read_interactions(write(tmp_path, "e2.txt", "", gz=True))
    with pytest.raises(SeqrecError, match=r"corrupt gzip"):
        read_interactions(write(tmp_path, "c.gz", b"\x1f\x8bnot really gzip"))


def test_wrong_separator_lists_columns_found(tmp_path):
    path = write(tmp_path, "w.csv", "user_id;item_id\n1;2\n")
    with pytest.raises(SeqrecError, match=r"columns found: \['user_id;item_id'\].*data.sep"):
        read_interactions(path, "csv", DataConfig(sep=","))


def test_missing_columns_and_time_column(tmp_path):
    path = write(tmp_path, "m.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(SeqrecError, match=r"\['user_id', 'item_id'\] not found.*data.user_col"):
        read_interactions(path)
    cfg = DataConfig(user_col="a", item_col="b", time_col="when")
    with pytest.raises(SeqrecError, match=r"time column 'when' not found.*data.time_col"):
        read_interactions(path, "auto", cfg)


def test_non_integer_ids_in_ml_dat(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::abc::5::978300760\n")
    with pytest.raises(SeqrecError, match=r"line 1: item id 'abc' is not an integer.*format=csv"):
        read_interactions(path)


def test_ml_dat_with_wrong_layout(tmp_path):
    path = write(tmp_path, "r.txt", "1,2,3,4\n")
    with pytest.raises(SeqrecError, match=r"not a MovieLens ratings.dat.*data.format"):
        read_interactions(path, "ml-dat")


def test_bad_and_missing_timestamps(tmp_path):
    bad = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n1,2,soon\n")
    with pytest.raises(
        SeqrecError, match=r"line 2: timestamp 'soon'.*epoch seconds.*time_col=null"
    ):
        read_interactions(bad)
    gap = write(tmp_path, "g.csv", "user_id,item_id,timestamp\n1,2,5\n1,3,\n")
    with pytest.raises(SeqrecError, match=r"g.csv line 3: no timestamp \(1 of 2 rows\)"):
        read_interactions(gap)


def test_pairs_with_ragged_lines(tmp_path):
    path = write(tmp_path, "p.txt", "1 2\n1 2 3 4 5\n")
    with pytest.raises(
        SeqrecError, match=r"p.txt line 2: 5 fields where line 1 has 2.*data.format=seq"
    ):
        read_interactions(path, "pairs")


def test_fractional_ids_and_unreadable_parquet(tmp_path):
    path = tmp_path / "f.parquet"
    pl.DataFrame({"user_id": [1.5], "item_id": [2]}).write_parquet(path)
    with pytest.raises(SeqrecError, match=r"row 1: user id 1.5 is not a whole number; store ids"):
        read_interactions(path)
    fake = write(tmp_path, "x.parquet", "not parquet")
    with pytest.raises(SeqrecError, match=r"(?i)not a readable parquet file"):
        read_interactions(fake)
