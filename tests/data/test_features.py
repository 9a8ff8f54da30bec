"""Item / user feature readers (data/features/): formats, alignment, unknowns, errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqrec.data.features import align, load_item_features, load_user_features, parse_file
from seqrec.data.store import build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

REAL = Path(os.environ.get("SEQREC_DATA_DIR", "/work/shared/data"))
MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Jumanji (1995)::Adventure|Children's|Fantasy",
    "3::Grumpier Old Men (1993)::Comedy|Romance",
    "5::Caf\xe9 Society (2001)::Drama",
]


def _ratings(path: Path, n_users: int = 6) -> Path:
    rows = [
        f"{u}::{i}::{1 + (u + i) % 5}::{1000 + 10 * u + i}"
        for u in range(1, n_users + 1)
        for i in (1, 2, 3, 4)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _store(tmp_path: Path, **kw):
    cfg = DataConfig(dataset=str(_ratings(tmp_path / "ratings.dat")), **kw)
    return cfg, build_store(cfg)


def test_movies_dat_aligned_to_internal_ids(tmp_path):
    (tmp_path / "movies.dat").write_bytes("\n".join(MOVIES).encode("latin-1"))
    cfg, store = _store(tmp_path, item_features="auto")
    f = load_item_features(cfg, store)
    assert list(store.item_ids) == ["<pad>", "1", "2", "3", "4"]
    assert f.n_rows == 5 and f.coverage == pytest.approx(0.75)  # item 4 has no record
    genres = f["genres"].values
    assert (genres[0] == 0).all() and (genres[4] == 0).all()  # PAD and unknown: none
    assert (genres[1] > 0).sum() == 3 and (genres[3] > 0).sum() == 2
    year = f["year"].values
    assert year[0] == 0 and year[4] == 0 and year[3] < year[1] == year[2]
    assert (f["title_tokens"].values[1] > 0).sum() == 2  # "toy", "story"


def test_shuffled_file_gives_identical_arrays(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "movies.dat").write_text("\n".join(MOVIES))
    (b / "movies.dat").write_text("\n".join(MOVIES[::-1]))
    ids = np.array(["<pad>", "3", "1", "2", "9"])
    fa = align(parse_file(a / "movies.dat"), ids, True, "a")
    fb = align(parse_file(b / "movies.dat"), ids, True, "b")
    for name in fa.names():
        np.testing.assert_array_equal(fa[name].values, fb[name].values)
        assert fa[name].vocab == fb[name].vocab


def test_u_item_movies_csv_attributes_and_users(tmp_path):
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"
    (tmp_path / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags))
    f = align(parse_file(tmp_path / "u.item"), np.array(["<pad>", "1"]), True, "u")
    assert (f["genres"].values[1] > 0).sum() == 2
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"Heat, The (1995)",Action\n')
    f = align(parse_file(tmp_path / "movies.csv"), np.array(["<pad>", "1"]), True, "c")
    assert f["genres"].values[1, 0] == 1
    path = tmp_path / "Beauty_item2attributes.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"1": [7, 3], "2": [3]}).encode()))
    f = align(parse_file(path), np.array(["<pad>", "1", "2", "3"]), True, "j")
    assert f["attributes"].vocab == 3 and f["attributes"].values.tolist() == [
        [0, 0],
        [1, 2],
        [1, 0],
        [0, 0],
    ]
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    f = align(parse_file(tmp_path / "users.dat"), np.array(["2", "1", "7"]), False, "u")
    assert f["gender"].values.tolist() == [2, 1, 0]  # sorted vocab F=1, M=2; unknown user 0


def test_unseen_category_maps_to_unknown(tmp_path):
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n")
    f = align(parse_file(tmp_path / "users.dat"), np.array(["1", "2"]), False, "u")
    assert f["occupation"].values.tolist() == [1, 0]


def test_missing_field_and_file_are_one_line_errors(tmp_path):
    (tmp_path / "movies.dat").write_text("\n".join(MOVIES))
    cfg, store = _store(tmp_path, item_features="auto", item_feature_fields=["genres", "budget"])
    with pytest.raises(SeqrecError, match=r"\['budget'\] not found") as err:
        load_item_features(cfg, store)
    assert "\n" not in str(err.value)
    cfg2 = cfg.model_copy(update={"item_features": str(tmp_path / "nope.dat")})
    with pytest.raises(SeqrecError, match="does not exist"):
        load_item_features(cfg2, store)


def test_features_load_without_polars(tmp_path):
    (tmp_path / "movies.dat").write_text("\n".join(MOVIES))
    code = (
        "import sys; sys.modules['polars'] = None\n"
        "import numpy as np\n"
        "from seqrec.data.features import align, parse_file\n"
        f"f = align(parse_file(__import__('pathlib').Path({str(tmp_path / 'movies.dat')!r})),"
        " np.array(['<pad>', '1']), True, 's')\n"
        "assert f.coverage == 1.0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not (REAL / "movielens/ml-1m/movies.dat").is_file(), reason="no real data")
def test_real_ml_1m_and_beauty(monkeypatch):
    monkeypatch.setenv("SEQREC_DATA_DIR", str(REAL))
    for name, field in (("ml-1m", "genres"), ("amazon-beauty", "attributes")):
        cfg = DataConfig(dataset=name, item_features="auto")
        store = build_store(cfg)
        f = load_item_features(cfg, store)
        assert f.coverage == 1.0 and f[field].values.shape[0] == store.n_items + 1
    cfg = DataConfig(dataset="ml-1m", user_features="auto")
    users = load_user_features(cfg, build_store(cfg))
    assert users.n_rows == 6040 and users.coverage == 1.0
