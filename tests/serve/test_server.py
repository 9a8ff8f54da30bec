"""The HTTP server: every endpoint's happy path, every 4xx, micro-batching, the faiss index and
the loopback default. Requests go through httpx's ASGI transport (no socket, no thread)."""

from __future__ import annotations

# ruff: noqa: E402 (the serving extras are checked before seqrec.serve.app is imported)
import json
import sys
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from typer.testing import CliRunner

import seqrec
from conftest import ITEM_OFFSET, N_ITEMS, asgi_requests
from seqrec.cli import app as cli_app
from seqrec.errors import SeqrecError
from seqrec.run import Run
from seqrec.serve.app import create_app
from seqrec.serve.index import FaissIndex, build_index

runner = CliRunner()


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("package")
    meta = root / "items.csv"
    meta.write_text("item_id,title\n" + "".join(f"{ITEM_OFFSET + j},Item {j}\n" for j in range(5)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        Run(trained_run).export(root / "pkg", item_metadata=meta)
    return root / "pkg"


@pytest.fixture(scope="module")
def rec(package):
    return seqrec.load(package)


def call(app, *requests):
    """Send (method, url, kwargs) requests concurrently; returns the responses in order."""
    return asgi_requests(app, *requests)


def post(app, url, body=None):
    # json.dumps escapes non-ASCII, so even a lone surrogate (invalid text) can be sent
    kw = {"content": json.dumps(body), "headers": {"content-type": "application/json"}}
    return call(app, ("POST", url, kw))[0]


def get(app, url):
    return call(app, ("GET", url, {}))[0]


def test_recommend_matches_the_library(rec):
    app = create_app(rec)
    res = post(app, "/recommend", {"history": ["105", 106], "k": 4})
    assert res.status_code == 200
    body = res.json()
    items, scores = rec.top_k(rec.encode([["105", "106"]]), 4)
    assert [x["item_id"] for x in body["items"]] == rec.decode(items[0]).tolist()
    np.testing.assert_allclose([x["score"] for x in body["items"]], scores[0], rtol=1e-5)
    assert [x["rank"] for x in body["items"]] == [1, 2, 3, 4]
    assert body["fallback"] is None and body["unknown_items"] == [] and body["k"] == 4


def test_unknown_items_are_reported_and_ignored(rec):
    app = create_app(rec)
    body = post(app, "/recommend", {"history": ["nope", "105", 7, "106"], "k": 3}).json()
    assert body["unknown_items"] == ["nope", "7"]
    ref = post(app, "/recommend", {"history": ["105", "106"], "k": 3}).json()
    assert body["items"] == ref["items"]
    # JSON Schema integers: 105.0 is the integer 105 (as an id and as k)
    same = post(app, "/recommend", {"history": [105.0, 106], "k": 3.0}).json()
    assert same["items"] == ref["items"] and same["unknown_items"] == []


@pytest.mark.parametrize("history", [[], ["nope", "also-unknown"]])
def test_empty_history_falls_back_to_popularity(rec, history):
    app = create_app(rec)
    body = post(app, "/recommend", {"history": history, "k": 5}).json()
    assert body["fallback"] == "popularity"
    pops = [rec.popularity[rec.lookup([x["item_id"]])[0][0]] for x in body["items"]]
    assert pops == sorted(rec.popularity[1:], reverse=True)[:5]
    assert [x["score"] for x in body["items"]] == [float(p) for p in pops]


def test_candidates_and_exclude_seen(rec):
    app = create_app(rec)
    cands = ["105", "106", "110", "111", "zzz"]
    body = post(app, "/recommend", {"history": ["105", "106"], "k": 10, "candidates": cands}).json()
    assert {x["item_id"] for x in body["items"]} == {"110", "111"}  # seen ones excluded
    assert body["unknown_candidates"] == ["zzz"]
    kept = post(
        app,
        "/recommend",
        {"history": ["105", "106"], "k": 10, "candidates": cands, "exclude_seen": False},
    ).json()
    assert {x["item_id"] for x in kept["items"]} == {"105", "106", "110", "111"}
    pop = post(app, "/recommend", {"history": [], "k": 3, "candidates": ["110", "111"]}).json()
    assert {x["item_id"] for x in pop["items"]} == {"110", "111"}
    assert pop["fallback"] == "popularity"


def test_batch_endpoint_keeps_order(rec):
    app = create_app(rec)
    reqs = [
        {"history": ["105"], "k": 2},
        {"history": [], "k": 1},
        {"history": ["120", "121"], "k": 3, "exclude_seen": False},
    ]
    res = post(app, "/recommend/batch", reqs)
    assert res.status_code == 200
    body = res.json()
    assert [len(b["items"]) for b in body] == [2, 1, 3]
    assert body[1]["fallback"] == "popularity"
    single = [post(app, "/recommend", r).json() for r in reqs]
    assert [[x["item_id"] for x in b["items"]] for b in body] == [
        [x["item_id"] for x in s["items"]] for s in single
    ]


def test_items_health_metadata_and_docs(rec, package):
    app = create_app(rec)
    item = get(app, f"/items/{ITEM_OFFSET + 1}").json()
    assert item == {
        "item_id": str(ITEM_OFFSET + 1),
        "popularity": int(rec.popularity[rec.lookup([str(ITEM_OFFSET + 1)])[0][0]]),
        "metadata": {"title": "Item 1"},
    }
    assert get(app, f"/items/{ITEM_OFFSET + 20}").json()["metadata"] is None
    assert get(app, "/health").json() == {"status": "ok", "model": "sasrec", "n_items": N_ITEMS}
    meta = get(app, "/metadata").json()
    assert meta["model"] == "sasrec" and meta["n_items"] == N_ITEMS
    assert meta["metrics"]["test"]["NDCG@10"] == rec.info["metrics"]["test"]["NDCG@10"]
    assert meta["protocol"]["ranking"] == "full" and meta["protocol"]["mask_seen"] is True
    assert meta["package"]["format_version"] == 1 and meta["package"]["seqrec_version"]
    assert meta["server"]["index"] == "exact"
    spec = get(app, "/openapi.json").json()
    assert {"/recommend", "/recommend/batch", "/items/{item_id}", "/health", "/metadata"} <= set(
        spec["paths"]
    )
    assert (
        spec["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == N_ITEMS
    )
    assert get(app, "/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"history": ["105"], "k": 0}, "k: Input should be greater than or equal to 1"),
        (
            {"history": ["105"], "k": N_ITEMS + 1},
            f"k: Input should be less than or equal to {N_ITEMS}",
        ),
        ({"history": ["105"], "k": "5"}, "k: Input should be a valid integer"),
        ({"history": ["105"], "k": 2.5}, "k: Input should be a valid integer"),
        ({"k": 3}, "history: Field required"),
        ({"history": "105"}, "history: Input should be a valid list"),
        ({"history": ["105", 1.5]}, "history[1]: item ids must be strings or integers"),
        ({"history": [None]}, "history[0]: item ids must be strings or integers"),
        ({"history": [True]}, "history[0]: item ids must be strings or integers"),
        ({"history": ["105", "\ud800"]}, "history[1]: item ids must be valid Unicode text"),
        ({"history": ["105"], "candidates": []}, "candidates: List should have at least 1 item"),
        (
            {"history": ["105"], "exclude_seen": "no"},
            "exclude_seen: Input should be a valid boolean",
        ),
        ({"history": ["105"], "kk": 3}, "kk: Extra inputs are not permitted"),
        ([{"history": ["105"]}], "body: Input should be a valid dictionary"),
        ({"history": ["1"] * 6}, "history: List should have at most 5 items"),
    ],
)
def test_bad_requests_get_422_with_a_clear_message(rec, body, where):
    app = create_app(rec, max_history=5)
    res = post(app, "/recommend", body)
    assert res.status_code == 422 and res.json()["error"] == "invalid_request"
    assert where in res.json()["message"]
    assert res.json()["detail"]  # FastAPI's structured list is kept


def test_other_4xx(rec):
    app = create_app(rec, max_batch_requests=2, max_body_bytes=2_000)
    assert post(app, "/recommend/batch", []).status_code == 422
    res = post(app, "/recommend/batch", [{"history": []}] * 3)
    assert res.status_code == 422 and "at most 2 items" in res.json()["message"]
    res = post(app, "/recommend/batch", [{"history": []}, {"history": [], "k": -1}])
    assert res.status_code == 422 and res.json()["message"].startswith("[1].k:")
    res = call(
        app,
        (
            "POST",
            "/recommend",
            {"content": b"{oops", "headers": {"content-type": "application/json"}},
        ),
    )[0]
    assert res.status_code == 422 and "invalid JSON" in res.json()["message"]
    res = post(app, "/recommend", {"history": ["105"] * 1000})
    assert res.status_code == 413 and "larger than 2000 bytes" in res.json()["message"]
    res = get(app, "/items/not-an-item")
    assert res.status_code == 404 and "unknown item id 'not-an-item'" in res.json()["message"]
    assert get(app, "/recommend").status_code == 405
    assert get(app, "/nothing-here").status_code == 404


def test_concurrent_requests_are_micro_batched(rec):
    app = create_app(rec, max_batch=64, max_wait_ms=50)
    hists = [[str(ITEM_OFFSET + (s + t) % N_ITEMS) for t in range(1 + s % 5)] for s in range(16)]
    reqs = [
        ("POST", "/recommend", {"json": {"history": h, "k": 3 + i % 3, "exclude_seen": i % 4 != 0}})
        for i, h in enumerate(hists)
    ]
    responses = call(app, *reqs)
    stats = app.state.batcher.stats()
    assert stats["requests"] == 16 and stats["batches"] < 16 and stats["largest_batch"] > 1
    for (_, _, kw), res in zip(reqs, responses, strict=True):
        q = kw["json"]
        ans = rec.recommend_ids(q["history"], q["k"], q["exclude_seen"])
        assert [x["item_id"] for x in res.json()["items"]] == ans.items
        np.testing.assert_allclose([x["score"] for x in res.json()["items"]], ans.scores, rtol=1e-5)


def test_faiss_index_gives_the_exact_top_k_on_a_small_catalogue(rec, monkeypatch):
    pytest.importorskip("faiss")
    index = build_index("faiss", rec, threads=1)
    assert isinstance(index, FaissIndex)
    hists = [np.array([5, 6, 7]), np.array([20]), np.arange(1, 28)]
    for exclude in (True, False):
        a_items, a_scores = index.search(rec, hists, 5, exclude, [None, None, None])
        b_items, b_scores = rec.top_k(hists, 5, exclude)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-4, atol=1e-5)
    # candidate filters are answered by the exact path
    cands = [np.array([1, 2, 3]), None, None]
    a_items, _ = index.search(rec, hists, 5, True, cands)
    b_items, _ = rec.top_k(hists, 5, True, candidates=cands)
    np.testing.assert_array_equal(a_items, b_items)
    assert index.fallbacks >= 1


def test_faiss_missing_is_a_clear_error(rec, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(SeqrecError, match="needs faiss-cpu"):
        build_index("faiss", rec)
    with pytest.raises(SeqrecError, match="--index must be one of"):
        build_index("annoy", rec)


def test_serve_binds_to_loopback_by_default(package, trained_run, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    res = runner.invoke(cli_app, ["serve", str(package), "--port", "8123"])
    assert res.exit_code == 0, res.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "127.0.0.1" in runner.invoke(cli_app, ["serve", "--help"]).output
    res = runner.invoke(cli_app, ["serve", str(trained_run)])
    assert res.exit_code != 0 and "is a training run" in str(res.exception)


def test_serve_reports_the_index_it_chose(package, tmp_path, monkeypatch):
    import uvicorn

    from seqrec.serve.index import AUTO_EXACT_BELOW

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    res = runner.invoke(cli_app, ["serve", str(package)])
    assert res.exit_code == 0, res.output
    assert f"index exact (auto: 30 items < {AUTO_EXACT_BELOW:,})" in res.output
    server = get(seen["app"], "/metadata").json()["server"]
    assert server["index"] == "exact" and server["index_build"]["recall_at_10"] == 1.0
    assert f"({AUTO_EXACT_BELOW:,})" in runner.invoke(cli_app, ["serve", "--help"]).output
    pytest.importorskip("faiss")
    hist = tmp_path / "histories.txt"
    hist.write_text("u1 105 106 107\nu2 nope 110\nu3 nope\n")
    args = ["serve", str(package), "--exact-below", "10", "--recall-histories", str(hist)]
    res = runner.invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    assert "index faiss-ivf (auto: 30 items >= 10)" in res.output and "recall@10" in res.output
    build = get(seen["app"], "/metadata").json()["server"]["index_build"]
    assert build["kind"] == "faiss-ivf" and build["met"]
    assert build["sample"]["source"] == "2 of 2 given user histories"  # u3 knows no item
    body = post(seen["app"], "/recommend", {"history": ["105", "106"], "k": 4}).json()
    served = seen["app"].state.recommender
    items, _ = served.top_k(served.encode([["105", "106"]]), 4)  # top_k: the exact path
    assert [x["item_id"] for x in body["items"]] == served.decode(items[0]).tolist()
    missing = tmp_path / "none.txt"
    res = runner.invoke(cli_app, ["serve", str(package), "--recall-histories", str(missing)])
    assert res.exit_code != 0 and "does not exist" in str(res.exception)
