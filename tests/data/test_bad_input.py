"""Every bad data file gets one line: the file, the line where it helps, the problem, a fix.

Each case goes through ``build_store`` (what ``seqrec train`` and ``seqrec data stats`` call),
so the checks cover detection, hashing and parsing in the order a user meets them; the CLI case
shows a truncated ``.gz`` no longer ends as a bare ``Aborted.``.
"""

from __future__ import annotations

import gzip
import os
import re
import sys

import pytest

from conftest import gzip_cut, gzip_flipped, parquet_bytes
from seqrec import cli
from seqrec.data import source
from seqrec.data.ingest import read_interactions
from seqrec.data.store import build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

FIX = re.compile(
    r"; .*\b(fix|set|add|download|point|pass|store|convert|replace|make|decompress|use|fill)\b"
)
CSV = "user_id,item_id,timestamp\n1,2,5\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))


_OK_PARQUET = parquet_bytes(user_id=[1, 2], item_id=[3, 4])

CASES = [
    # (file name, content, data.format, expected text in the message)
    ("nan.csv", CSV + "1,3,nan\n", "auto", "nan.csv line 3: timestamp nan is not a finite"),
    ("inf.csv", CSV + "1,3,inf\n1,4,-inf\n", "auto", "line 3: timestamp inf is not a finite"),
    ("neg.csv", CSV + "1,3,-4\n", "auto", "line 3: timestamp -4 is negative"),
    ("huge.csv", CSV + "1,3,99999999999999999999\n", "auto", "line 3: timestamp 1e+20 is past"),
    (
        "late.txt",
        "1 2 978300760\n1 3 40000000000000\n",
        "pairs",
        "line 2: timestamp 40000000000000",
    ),
    (
        "nan.parquet",
        parquet_bytes(user_id=[1, 2], item_id=[3, 4], timestamp=[1.0, float("nan")]),
        "auto",
        "nan.parquet row 2: timestamp nan",
    ),
    ("ids.dat", "1::2::5::978300760\n1::x7::5::978300761\n", "ml-dat", "line 2: item id 'x7'"),
    ("noid.csv", CSV + ",3,6\n", "auto", "noid.csv line 3: no user id"),
    ("frac.csv", "user_id,item_id\n1,2\n1,2.5\n", "auto", None),  # text ids: valid
    ("rag.txt", "1 2\n1 3\n2 3 4\n", "pairs", "rag.txt line 3: 3 fields where line 1 has 2"),
    ("rag.dat", "1::2::5::978300760\n1::3::5\n", "ml-dat", "rag.dat line 2: 3 '::'-separated"),
    ("rag.csv", CSV + "1,3,6,7\n", "csv", "rag.csv line 3: 4 fields where the header has 3"),
    ("cut.txt.gz", gzip_cut("1 2 978300760\n" * 50_000, 0.5), "auto", "is a truncated gzip"),
    ("tiny.txt.gz", gzip_cut("1 2\n1 3\n", 0.7), "auto", "is a truncated gzip"),
    ("bad.txt.gz", gzip_flipped(), "auto", "is a corrupt gzip file"),
    ("cut.parquet", _OK_PARQUET[:-20], "auto", "cut.parquet is not a readable Parquet file"),
    (
        "mid.parquet",
        _OK_PARQUET[:8] + b"\0" * 40 + _OK_PARQUET[48:],
        "auto",
        "mid.parquet is not a readable Parquet file",
    ),
    ("fake.parquet", b"not parquet at all", "parquet", "is not a readable Parquet file"),
    ("empty.txt", b"", "auto", "empty.txt is empty"),
    ("blank.txt", "\n  \n\n", "auto", "blank.txt is empty"),
    ("empty.txt.gz", gzip.compress(b""), "auto", "empty.txt.gz is empty once decompressed"),
    ("head.csv", "user_id,item_id\n", "auto", "head.csv holds no interactions"),
    ("log.bz2", b"BZh91AY&SY" + b"x" * 30, "auto", "log.bz2 is bzip2-compressed"),
]


@pytest.mark.parametrize(("name", "content", "fmt", "says"), CASES, ids=[c[0] for c in CASES])
def test_one_line_naming_the_file_and_the_fix(tmp_path, name, content, fmt, says):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    cfg = DataConfig(dataset=str(path), format=fmt)
    if says is None:
        build_store(cfg)
        return
    with pytest.raises(SeqrecError) as err:
        build_store(cfg)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert name in msg and says in msg, msg
    assert FIX.search(msg), msg


def test_a_directory_and_an_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    with pytest.raises(SeqrecError, match=r"folder is a directory; pass the interactions file"):
        read_interactions(tmp_path / "folder")
    path = tmp_path / "locked.txt"
    path.write_text("1 2\n")
    if os.geteuid() == 0:  # root reads anything: make the open fail as it would for a user

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(source, "open", denied, raising=False)
    path.chmod(0)
    try:
        with pytest.raises(SeqrecError) as err:
            build_store(DataConfig(dataset=str(path)))
    finally:
        path.chmod(0o644)
    assert "\n" not in str(err.value)
    assert re.search(
        r"cannot read .*locked.txt: permission denied; make it readable", str(err.value)
    )


def test_cli_reports_a_truncated_gzip_in_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(gzip_cut("1 2\n1 3\n", 0.7))
    monkeypatch.setattr(sys, "argv", ["seqrec", "data", "stats", str(path)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Aborted" not in err and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cut.txt.gz is a truncated gzip file" in lines[0], err
