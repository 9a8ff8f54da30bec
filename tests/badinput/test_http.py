"""HTTP requests the server must refuse, and short answers it must flag.

Every refusal has the documented status and the one error shape ``{error, message, detail}``
with a one-line message that names the field and the fix; a chunked body over the limit gets
413 like a declared one. An answer with fewer than k items says so (``returned``, ``short``),
and echoed unknown ids are capped. Requests go through httpx's ASGI transport (no socket);
the real-socket chunked case is in tests/serve/test_server_limits.py.
"""

from __future__ import annotations

import json

import pytest

from conftest import ITEM_OFFSET, N_ITEMS

from .harness import case, json_body

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

EVERY = [str(ITEM_OFFSET + j) for j in range(N_ITEMS)]
THREE = EVERY[:3]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def rec(shared_package):
    import seqrec

    return seqrec.load(shared_package)


@pytest.fixture
def app(rec, package):
    """A fresh app per case (its micro-batcher closes after the request); the package it was
    loaded from is watched like every case's files."""
    from seqrec.serve.app import create_app

    return create_app(rec, max_body_bytes=1 << 20)


def _raw(content: bytes, **headers):
    return {"content": content, "headers": {**JSON, **headers}}


async def _chunks(total: int, size: int = 16 << 10):
    piece = b'{"history": [' + b'"x",' * (size // 4)
    for _ in range(0, total, len(piece)):
        yield piece


REFUSED = [
    # (method, url, request keyword arguments, status, words the message must hold)
    case("requests", "json-with-a-syntax-error", "POST", "/recommend",
         _raw(b'{"history": ['), 422, ["invalid JSON"]),
    case("requests", "a-body-that-is-not-utf-8", "POST", "/recommend",
         _raw(b'{"history": ["\xff\xfe"]}'), 400, ["not valid UTF-8"]),
    case("requests", "json-nested-too-deeply", "POST", "/recommend",
         _raw(b"[" * 100_000 + b"]" * 100_000), 400, ["nested too deeply"]),
    case("requests", "an-empty-body", "POST", "/recommend", _raw(b""), 422, ["body"]),
    case("requests", "a-json-array-for-one-request", "POST", "/recommend",
         json_body([THREE]), 422, ["body"]),
    case("requests", "json-null", "POST", "/recommend", json_body(None), 422, ["body"]),
    case("requests", "no-history", "POST", "/recommend", json_body({"k": 3}), 422,
         ["history"]),
    case("requests", "a-history-that-is-a-string", "POST", "/recommend",
         json_body({"history": "101 102"}), 422, ["history"]),
    case("requests", "an-item-id-that-is-an-object", "POST", "/recommend",
         json_body({"history": [{"id": 101}]}), 422, ["history[0]"]),
    case("requests", "an-item-id-that-is-a-fraction", "POST", "/recommend",
         json_body({"history": [101.5]}), 422, ["history[0]"]),
    case("requests", "an-item-id-with-a-lone-surrogate", "POST", "/recommend",
         _raw(b'{"history": ["\\ud800"]}'), 422, ["history[0]"]),
    case("requests", "k-as-a-string", "POST", "/recommend",
         json_body({"history": THREE, "k": "5"}), 422, ["k"]),
    case("requests", "k-as-a-fraction", "POST", "/recommend",
         json_body({"history": THREE, "k": 2.5}), 422, ["k"]),
    case("requests", "k-as-a-boolean", "POST", "/recommend",
         json_body({"history": THREE, "k": True}), 422, ["k"]),
    case("requests", "a-huge-k", "POST", "/recommend",
         json_body({"history": THREE, "k": 10**30}), 422, ["k"]),
    case("requests", "k-of-zero", "POST", "/recommend",
         json_body({"history": THREE, "k": 0}), 422, ["k"]),
    case("requests", "k-above-the-catalogue", "POST", "/recommend",
         json_body({"history": THREE, "k": N_ITEMS + 1}), 422, ["k", str(N_ITEMS)]),
    case("requests", "an-unknown-field", "POST", "/recommend",
         json_body({"history": THREE, "topk": 5}), 422, ["topk"]),
    case("requests", "exclude-seen-as-a-string", "POST", "/recommend",
         json_body({"history": THREE, "exclude_seen": "yes"}), 422, ["exclude_seen"]),
    case("requests", "an-empty-candidate-list", "POST", "/recommend",
         json_body({"history": THREE, "candidates": []}), 422, ["candidates"]),
    case("requests", "a-history-over-10000-ids", "POST", "/recommend",
         json_body({"history": ["101"] * 10_001}), 422, ["history"]),
    case("requests", "an-empty-batch", "POST", "/recommend/batch", json_body([]), 422, ["body"]),
    case("requests", "a-batch-over-256-requests", "POST", "/recommend/batch",
         json_body([{"history": THREE}] * 257), 422, ["body"]),
    case("requests", "a-batch-that-is-one-object", "POST", "/recommend/batch",
         json_body({"history": THREE}), 422, ["body"]),
    case("requests", "a-declared-body-over-the-limit", "POST", "/recommend",
         _raw(b" " * (1 << 20) + b"{}"), 413, ["larger than 1048576 bytes"]),
    case("requests", "a-chunked-body-over-the-limit", "POST", "/recommend",
         {"content": _chunks(4 << 20), "headers": JSON}, 413, ["larger than 1048576 bytes"]),
    case("requests", "a-text-plain-body", "POST", "/recommend",
         {"content": json.dumps({"history": THREE}), "headers": {"content-type": "text/plain"}},
         415, ["Content-Type: application/json", "text/plain"]),
    case("requests", "a-body-without-a-content-type", "POST", "/recommend",
         {"content": json.dumps({"history": THREE})}, 415, ["no Content-Type"]),
    case("requests", "a-form-body", "POST", "/recommend/batch",
         {"data": {"history": "101"}}, 415, ["application/x-www-form-urlencoded"]),
    case("requests", "get-on-a-post-route", "GET", "/recommend", {}, 405, ["POST"]),
    case("requests", "delete-on-health", "DELETE", "/health", {}, 405, ["GET"]),
    case("requests", "put-on-an-item", "PUT", f"/items/{ITEM_OFFSET}", {}, 405, ["GET"]),
    case("requests", "an-unknown-route", "GET", "/recommendations", {}, 404,
         ["no endpoint at /recommendations", "/docs"]),
    case("requests", "an-unknown-item", "GET", "/items/nope", {}, 404, ["'nope'"]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "kw", "status", "says"), REFUSED)
def test_the_server_refuses(user, app, method, url, kw, status, says):
    user.http_fails(app, method, url, status, says, **kw)


SHORT = [
    # (body, k, returned, short)
    case("short-answers", "http-k-equal-to-the-catalogue-says-short", THREE, N_ITEMS,
         N_ITEMS - 3, True),
    case("short-answers", "http-a-history-covering-the-catalogue-says-none", EVERY, 5, 0, True),
    case("short-answers", "http-duplicate-history-ids-count-once", THREE * 3, 27, 27, False),
]  # fmt: skip


@pytest.mark.parametrize(("history", "k", "returned", "short"), SHORT)
def test_short_answers_say_so(user, app, history, k, returned, short):
    res = user.request(app, "POST", "/recommend", **json_body({"history": history, "k": k}))
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["k"], body["returned"], body["short"]) == (k, returned, short)
    items = [r["item_id"] for r in body["items"]]
    assert len(items) == returned == len(set(items)) and not set(items) & set(history)


@pytest.mark.badinput("short-answers")
def test_unknown_ids_are_echoed_capped(user, app):
    """short-answers: 500 unknown ids come back as the first 100 and a count of the rest,
    never as a response that grows with the request."""
    unknown = [f"nope{i}" for i in range(500)]
    res = user.request(app, "POST", "/recommend", **json_body({"history": [*unknown, *THREE]}))
    body = res.json()
    assert res.status_code == 200 and body["unknown_items"] == unknown[:100]
    assert body["unknown_items_omitted"] == 400 and body["returned"] == body["k"]


@pytest.mark.badinput("short-answers")
def test_a_batch_flags_each_answer(user, app):
    """short-answers: in a batch, each answer carries its own returned / short."""
    reqs = [{"history": EVERY, "k": 3}, {"history": THREE, "k": 3}]
    res = user.request(app, "POST", "/recommend/batch", **json_body(reqs))
    assert res.status_code == 200, res.text
    assert [(a["returned"], a["short"]) for a in res.json()] == [(0, True), (3, False)]
