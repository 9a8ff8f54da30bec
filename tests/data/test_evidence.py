"""Format detection decides on evidence only, and the evidence and counts reach store.stats().

The first tests are the misreads from issue 22: a time-sorted ``user item timestamp`` log with
small integer times (read as one user per line: 500 items became 6,000) and a pairs file with
one ragged line (read the same way).
"""

from __future__ import annotations

import json
import logging

import pytest

from seqrec.data.evidence import SAMPLE_LINES, detect
from seqrec.data.ingest import read_interactions
from seqrec.data.store import build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def sorted_log(users: int, steps: int = 6, items: int = 500) -> str:
    """Every user acts once per time step 1..steps, the file sorted by time (issue 22)."""
    return "".join(
        f"{u} {(u * 7 + t) % items + 1} {t}\n" for t in range(1, steps + 1) for u in range(users)
    )


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_time_sorted_triples_with_small_times_are_pairs_with_timestamps(tmp_path):
    path = write(tmp_path, "log.txt", sorted_log(1000))
    choice = detect(path)
    assert choice.format == "pairs" and choice.detected
    assert "never decreases within a user" in choice.evidence
    store = build_store(DataConfig(dataset=str(path)))
    stats = store.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (1000, 500, 6000)
    assert stats["has_timestamps"] and stats["format"] == "pairs"
    assert stats["format_evidence"].startswith("detected: every one of the first 5,000 lines")


def test_triples_whose_sample_shows_no_user_twice_are_refused(tmp_path):
    # 10,000 users: the first 5,000 lines hold each user once, so nothing shows field 3 is a
    # time (1 everywhere) nor that a line is not one user's sequence
    path = write(tmp_path, "log.txt", sorted_log(10_000, steps=2))
    with pytest.raises(SeqrecError) as err:
        build_store(DataConfig(dataset=str(path)))
    msg = one_line(err)
    assert "cannot tell the format" in msg and "log.txt" in msg
    assert "data.format=pairs" in msg and "data.format=seq" in msg
    store = build_store(DataConfig(dataset=str(path), format="pairs"))
    assert store.stats()["interactions"] == 20_000 and store.n_items == 500
    assert store.stats()["format_evidence"] == "given: data.format=pairs"


def test_a_ragged_line_in_a_pairs_file_is_refused_naming_both_readings(tmp_path):
    text = "".join(f"{u} {i}\n" for u in range(1, 40) for i in range(1, 4)) + "7 1 2 3 4 5\n"
    path = write(tmp_path, "pairs.txt", text)
    with pytest.raises(SeqrecError) as err:
        build_store(DataConfig(dataset=str(path)))
    msg = one_line(err)
    assert "pairs.txt" in msg and "line 118 has 6 fields" in msg
    assert "line 2 repeats the first field '1' of line 1" in msg
    assert "data.format=pairs" in msg and "data.format=seq" in msg
    with pytest.raises(SeqrecError, match=r"pairs.txt line 118: 6 fields where line 1 has 2"):
        build_store(DataConfig(dataset=str(path), format="pairs"))


def test_a_ragged_line_past_the_sample_is_still_reported_with_its_line(tmp_path):
    lines = SAMPLE_LINES + 10
    text = "".join(f"{u % 50} {u % 7}\n" for u in range(lines)) + "3 4 5 6 7\n"
    with pytest.raises(SeqrecError, match=rf"line {lines + 1}: 5 fields where line 1 has 2"):
        read_interactions(write(tmp_path, "p.txt", text))


def test_a_third_field_that_is_no_time_is_refused_with_both_readings(tmp_path):
    text = "".join(f"{u} {i} {(u * i) % 5 + 1}\n" for u in range(1, 30) for i in range(1, 6))
    path = write(tmp_path, "r.txt", text)
    with pytest.raises(SeqrecError) as err:
        detect(path)
    msg = one_line(err)
    assert "goes back from 5 to 1 on line 5" in msg
    assert "data.format=pairs" in msg and "data.format=pairs data.time_col=null" in msg
    untimed = detect(path, DataConfig(time_col=None))
    assert untimed.format == "pairs" and "field 3 is not read" in untimed.evidence
    # a given format is never second-guessed: field 3 is read as the time
    inter = read_interactions(path, "pairs")
    assert inter.has_timestamps and inter.evidence == "given: format=pairs"


@pytest.mark.parametrize(
    ("text", "fmt", "evidence"),
    [
        ("196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "pairs", "epoch seconds (1997"),
        ("1 2 1600000000000\n1 3 1600000000001\n", "pairs", "epoch ms (2020 to 2020)"),
        ("1 2\n1 3\n2 3\n", "pairs", "2 fields (user item)"),
        ("1 5 3 9\n2 7\n3 4 8\n", "seq", "2 to 4 fields and no two start"),
        ("7 1 2 3 4 5\n8 1 2 3 4 5\n", "seq", "6 fields and no two start"),
        ("1::2::3::978300760\n", "ml-dat", "4 '::' fields"),
        ("user_id item_id\n1 2\n", "csv", "header naming data.user_col=user_id"),
        ("userId,movieId,rating\n1,2,3\n", "csv", "MovieLens header"),
        ("who;what\na;1\nb;2\n", "csv", "field 2 ('what') is text where the other 2"),
    ],
)
def test_detection_says_what_it_saw(tmp_path, text, fmt, evidence):
    choice = detect(write(tmp_path, "f.txt", text))
    assert choice.format == fmt and evidence in choice.evidence
    assert choice.evidence.startswith("detected: ")


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("f.txt", "1,2,3\n4,5,6\n", "line 1 is ','-separated data, not a header"),
        ("f.csv", "1,2,3\n", "add a header line such as 'user_id,item_id,timestamp'"),
        ("f.txt", "5\n6\n", "every sampled line has one field"),
        ("f.txt", "1::2::3\n", "f.txt line 1: 3 '::'-separated fields"),
        ("f.txt", "1 2 3 4 5\n1 6 7 8 9\n", "every line has 5 fields"),
    ],
)
def test_detection_refuses_without_evidence(tmp_path, name, text, says):
    with pytest.raises(SeqrecError) as err:
        detect(write(tmp_path, name, text))
    assert says in one_line(err) and name in str(err.value)


def test_seq_lines_that_repeat_a_user_past_the_sample(tmp_path, caplog):
    text = "".join(f"{u} 3 4{' 5' * (u % 3)}\n" for u in range(SAMPLE_LINES + 5)) + "2 8 9\n"
    path = write(tmp_path, "s.txt", text)
    with pytest.raises(SeqrecError) as err:
        read_interactions(path)
    assert f"s.txt line {SAMPLE_LINES + 6} repeats the user id '2'" in one_line(err)
    assert "set data.format=seq" in str(err.value)
    with caplog.at_level(logging.WARNING):
        inter = read_interactions(path, "seq")
    assert "appends their items" in caplog.text
    assert inter.frame.filter(inter.frame["user"] == 2)["item"].to_list() == [3, 4, 5, 5, 8, 9]


def test_evidence_and_counts_reach_store_stats(tmp_path, caplog):
    rows = ["user_id,item_id,timestamp"]
    rows += [f"{u},{i},{1_000_000 + 10 * i}" for u in range(1, 9) for i in range(1, 7)]
    rows += ["1,1,1000010", "1,2,1000020"]  # two duplicates
    rows += ["9,99,1000000"]  # a user and an item below the k-core
    path = write(tmp_path, "log.csv", "\n".join(rows) + "\n")
    cfg = DataConfig(dataset=str(path), dedupe="first", min_user_count=2, min_item_count=2)
    with caplog.at_level(logging.INFO):
        store = build_store(cfg)
    stats = store.stats()
    assert stats["format"] == "csv" and stats["rows_read"] == 51
    assert "line 1 is a header" in stats["format_evidence"]
    assert stats["dropped"] == {"duplicates": 2, "kcore": 1, "kcore_users": 1, "kcore_items": 1}
    assert stats["interactions"] == 48
    assert "51 interactions read as csv (detected: line 1 is a header" in caplog.text
    assert "dropped: duplicates 2, kcore 1" in caplog.text
    json.dumps(stats)  # results.json copies it
    again = build_store(cfg).stats()  # from the cache: the same report
    assert again == stats
    given = build_store(cfg.model_copy(update={"format": "csv"}))
    assert given.meta["cache_key"] == store.meta["cache_key"]  # the key holds the format only
    assert given.stats()["format_evidence"] == "given: data.format=csv"


def test_a_store_cached_before_read_reports_is_rebuilt_in_place(tmp_path):
    path = write(tmp_path, "log.txt", "1 2\n1 3\n2 3\n")
    store = build_store(DataConfig(dataset=str(path)))
    meta_file = next((tmp_path / "cache" / "stores").glob("*/meta.json"))
    meta = json.loads(meta_file.read_text())
    for key in ("format_evidence", "rows_read", "dropped"):
        del meta["meta"][key]
    meta_file.write_text(json.dumps(meta))
    again = build_store(DataConfig(dataset=str(path)))
    assert again.stats() == store.stats() and again.stats()["rows_read"] == 3
    assert "rows_read" in json.loads(meta_file.read_text())["meta"]  # same folder, rebuilt


def test_seq_users_without_items_are_counted(tmp_path):
    store = build_store(DataConfig(dataset=str(write(tmp_path, "s.txt", "1 5 6 7\n2\n3 4 5\n"))))
    assert store.stats()["skipped_lines"] == {"users_without_items": 1}
    assert store.stats()["rows_read"] == 5
