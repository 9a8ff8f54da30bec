"""Catalogue: names, local resolution, downloads (faked: no test touches the network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
import urllib.request
import zipfile

import pytest

from seqrec.data import catalog, list_datasets, prepare, resolve
from seqrec.data.catalog import CATALOG, DatasetSpec, with_catalog_defaults
from seqrec.data.store import build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SEQREC_DATA_DIR", raising=False)


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, payload: bytes):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(payload))


def fake_spec(monkeypatch, sha256: str | None, member: str = "fake/data.txt", **kw) -> DatasetSpec:
    spec = DatasetSpec(
        "fake",
        "https://example.invalid/fake.zip",
        sha256,
        member,
        "seq",
        (("fake/data.txt", "seq"),),
        **kw,
    )
    monkeypatch.setitem(CATALOG, "fake", spec)
    return spec


def ml1m_seq(path, n_users: int = 4):
    """Tiny stand-in for the ML-1M sequence file: item 99 is rated by one user only."""
    lines = [
        " ".join([str(u)] + [str(i) for i in range(1, 7)] + (["99"] if u == 1 else []))
        for u in range(1, n_users + 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_list_datasets_and_unknown_name_suggestion():
    names = [spec.name for spec in list_datasets()]
    assert {"ml-1m", "ml-20m", "ml-100k", "amazon-beauty", "amazon-video", "lastfm"} <= set(names)
    with pytest.raises(SeqrecError, match=r"unknown dataset 'ml1m'. Did you mean 'ml-1m'.*ml-20m"):
        resolve("ml1m")
    with pytest.raises(SeqrecError, match=r"does not exist.*check data.dataset"):
        resolve("missing/file.csv")


def test_relative_path_is_also_looked_up_under_the_data_dir(tmp_path, monkeypatch):
    """A relative file path not under the working directory resolves under
    $SEQREC_DATA_DIR (so one config works offline on every machine); an absolute one never."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "log.csv").write_text("user_id,item_id\n1,2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    assert resolve("sub/log.csv")[0] == root / "sub" / "log.csv"
    with pytest.raises(SeqrecError, match="does not exist"):
        resolve(str(tmp_path / "sub" / "log.csv"))
    monkeypatch.delenv("SEQREC_DATA_DIR")
    with pytest.raises(SeqrecError, match="does not exist"):
        resolve("sub/log.csv")


def test_local_resolution_prefers_full_ratings(tmp_path, monkeypatch, offline):
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    partial = root / "movielens/ml-1m/ratings.PARTIAL_first487650lines.dat.gz"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(gzip.compress(b"1::1::5::1\n"))
    with pytest.raises(SeqrecError, match=r"could not be downloaded"):  # never the partial file
        resolve("ml-1m")
    seq = ml1m_seq(root / "movielens/ml-1m/ml-1m.seq.txt.gz")
    assert resolve("ml-1m") == (seq, "seq", CATALOG["ml-1m"])
    full = root / "ml-1m/ratings.dat"
    full.parent.mkdir()
    full.write_text("1::1::5::1\n")
    assert resolve("ml-1m")[:2] == (full, "ml-dat")
    other = tmp_path / "explicit"
    ml1m_seq(other / "amazon/s3rec/Beauty.txt.gz")
    assert resolve("amazon-beauty", data_dir=other)[0] == other / "amazon/s3rec/Beauty.txt.gz"


def test_folder_path_picks_the_ratings_file(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId\n1,2\n")
    assert resolve(str(tmp_path)) == (tmp_path / "ratings.csv", "auto", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SeqrecError, match=r"pass the data file itself"):
        resolve(str(empty))


def test_offline_error_names_url_and_where_to_put_the_file(tmp_path, offline):
    with pytest.raises(SeqrecError) as err:
        resolve("ml-1m")
    msg = str(err.value)
    assert "dataset 'ml-1m' not found locally and could not be downloaded (no network)" in msg
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
    assert "ratings.dat" in msg and "SEQREC_DATA_DIR" in msg and "\n" not in msg
    assert not list((tmp_path / "cache/downloads/ml-1m").iterdir())  # no partial file left
    with pytest.raises(SeqrecError) as err:  # a file that can be rebuilt offline says how
        resolve("ml-1m-sasrec")
    assert "benchmarks/ml1m_sasrec_file.py write" in str(err.value)
    assert "\n" not in str(err.value)


def test_sha256_mismatch_deletes_the_download(tmp_path, monkeypatch):
    payload = b"1 2 3 4\n"
    fake_spec(monkeypatch, "0" * 64)
    serve(monkeypatch, payload)
    real = hashlib.sha256(payload).hexdigest()
    with pytest.raises(SeqrecError, match=f"sha256 {real} != expected {'0' * 64}.*deleted"):
        resolve("fake")
    assert not list((tmp_path / "cache/downloads/fake").iterdir())


def test_verified_zip_download_is_extracted_and_reused(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fake/data.txt", "1 2 3 4\n2 3 4 5\n")
    payload = buf.getvalue()
    fake_spec(monkeypatch, hashlib.sha256(payload).hexdigest())
    serve(monkeypatch, payload)
    path, fmt, _ = resolve("fake")
    assert path == tmp_path / "cache/downloads/fake/data.txt" and fmt == "seq"
    assert path.read_text() == "1 2 3 4\n2 3 4 5\n"
    assert [p.name for p in path.parent.iterdir()] == ["data.txt"]
    monkeypatch.setattr(urllib.request, "urlopen", None)  # a second resolve must not download
    assert resolve("fake")[0] == path


def test_missing_hash_skips_verification_with_warning(monkeypatch, caplog):
    fake_spec(monkeypatch, None, member="data.txt")
    serve(monkeypatch, b"1 2 3\n")
    with caplog.at_level("WARNING", logger=catalog.log.name):
        path, _, _ = resolve("fake")
    assert path.read_bytes() == b"1 2 3\n" and "skipping verification" in caplog.text


def test_catalog_defaults_only_fill_untouched_fields():
    cfg = with_catalog_defaults(DataConfig(dataset="ml-1m"))
    assert (cfg.min_user_count, cfg.min_item_count, cfg.kcore) == (5, 5, "once")
    kept = with_catalog_defaults(DataConfig(dataset="ml-1m", min_item_count=2))
    assert (kept.min_item_count, kept.kcore) == (2, "once")
    round_trip = with_catalog_defaults(
        DataConfig.model_validate(DataConfig(dataset="ml-1m").model_dump())
    )
    assert round_trip == cfg
    assert with_catalog_defaults(DataConfig(dataset="some/file.txt")).min_item_count == 0
    raw = with_catalog_defaults(DataConfig(dataset="ml-1m", catalog_defaults=False))
    assert (raw.min_user_count, raw.min_item_count, raw.kcore) == (0, 0, "iterative")


def test_prepare_applies_catalog_preprocessing(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    ml1m_seq(root / "movielens/ml-1m/ml-1m.seq.txt.gz", n_users=6)
    monkeypatch.setitem(
        CATALOG, "ml-1m", DatasetSpec(**{**CATALOG["ml-1m"].__dict__, "expected_interactions": 37})
    )
    store, split = prepare(DataConfig(dataset="ml-1m"))
    assert store.n_items == 6 and store.n_users == 6  # item 99 (1 rating) dropped
    assert store.meta["preprocessing"]["kcore"] == "once" and len(split.test) == 6


def test_truncated_catalog_file_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    ml1m_seq(root / "movielens/ml-1m/ml-1m.seq.txt.gz")
    with pytest.raises(
        SeqrecError,
        match=r"has 25 interactions but the complete ml-1m has "
        r"1,000,209.*pass the file path",
    ):
        build_store(DataConfig(dataset="ml-1m"))


def test_sasrec_ml1m_file_keeps_its_order_and_ids(tmp_path, monkeypatch, offline):
    """ml-1m-sasrec is the 'user item' file the papers train on: read as pairs, in file order
    (no timestamps, so a user's order is the file's), no extra filtering."""
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    path = root / "movielens/ml-1m-sasrec/ml-1m.txt"
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"{u} {i}\n" for u in (1, 2, 3) for i in (5, 3, 9, 1)))
    assert resolve("ml-1m-sasrec") == (path, "pairs", CATALOG["ml-1m-sasrec"])
    monkeypatch.setitem(
        CATALOG,
        "ml-1m-sasrec",
        DatasetSpec(**{**CATALOG["ml-1m-sasrec"].__dict__, "expected_interactions": 12}),
    )
    store, split = prepare(DataConfig(dataset="ml-1m-sasrec"))
    ids = store.item_ids
    first = [int(ids[i]) for i in store.items[store.offsets[0] : store.offsets[1]]]
    assert first == [5, 3, 9, 1] and store.n_items == 4 and len(split.test) == 3


def test_copy_with_a_caveat_is_used_with_a_warning_once(tmp_path, monkeypatch, offline, caplog):
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA_DIR", str(root))
    monkeypatch.setattr(catalog, "_WARNED", set())
    seq = ml1m_seq(root / "movielens/ml-1m/ml-1m.seq.txt.gz")
    with caplog.at_level("WARNING", logger="seqrec.data.catalog"):
        assert resolve("ml-1m")[0] == seq
        assert resolve("ml-1m")[0] == seq
    notes = [r.getMessage() for r in caplog.records if "same second" in r.getMessage()]
    assert len(notes) == 1 and "dataset=ml-1m-sasrec" in notes[0] and str(seq) in notes[0]
    caplog.clear()
    full = root / "ml-1m/ratings.dat"
    full.parent.mkdir()
    full.write_text("1::1::5::1\n")
    with caplog.at_level("WARNING", logger="seqrec.data.catalog"):
        assert resolve("ml-1m")[0] == full
    assert not caplog.records


def test_catalogue_file_passed_by_path_keeps_its_catalogue_name(tmp_path, monkeypatch):
    path = tmp_path / "copies" / "ml-1m.txt"
    path.parent.mkdir()
    path.write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in (4, 5, 6)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert build_store(DataConfig(dataset=str(path))).name == "ml-1m"  # named after the file
    monkeypatch.setitem(
        CATALOG,
        "ml-1m-sasrec",
        DatasetSpec(**{**CATALOG["ml-1m-sasrec"].__dict__, "sha256": digest}),
    )
    assert build_store(DataConfig(dataset=str(path))).name == "ml-1m-sasrec"
