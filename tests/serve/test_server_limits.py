"""The server's limits and error contract: the body limit holds for chunked bodies, every error
has one JSON shape, every status is in the OpenAPI schema, echoed lists are capped, short
answers say so, and the docs pages need no network."""

from __future__ import annotations

# ruff: noqa: E402 (the serving extras are checked before seqrec.serve.app is imported)
import json
import socket
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

import seqrec
from conftest import ITEM_OFFSET, N_ITEMS, asgi_requests
from seqrec.serve.app import create_app
from seqrec.serve.errors import ERROR_CODES, MAX_ECHO, MAX_ERRORS


@pytest.fixture(scope="module")
def rec(exported_package):
    return seqrec.load(exported_package)


def send(app, method, url, raise_app_exceptions=True, **kw) -> httpx.Response:
    return asgi_requests(app, (method, url, kw), raise_app_exceptions=raise_app_exceptions)[0]


def post_json(app, url, body, **kw) -> httpx.Response:
    return send(app, "POST", url, content=json.dumps(body), headers=JSON, **kw)


JSON = {"content-type": "application/json"}
EVERY = [str(ITEM_OFFSET + j) for j in range(N_ITEMS)]


def assert_error(res: httpx.Response, status: int, *words: str) -> dict:
    """The one error shape: {error, message, detail}, a one-line message, the status's code."""
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    body = res.json()
    assert set(body) == {"error", "message", "detail"}
    assert body["error"] == ERROR_CODES[status][0]
    assert body["message"] and "\n" not in body["message"] and len(body["message"]) < 400
    for w in words:
        assert w in body["message"], body["message"]
    return body


async def _chunks(total: int, size: int = 64 << 10):
    piece = b'{"history": [' + b'"x",' * (size // 4)
    for _ in range(0, total, len(piece)):
        yield piece


def test_a_chunked_body_over_the_limit_gets_413(rec):
    app = create_app(rec, max_body_bytes=100_000)
    res = send(app, "POST", "/recommend", content=_chunks(5_000_000), headers=JSON)
    body = assert_error(res, 413, "larger than 100000 bytes")
    assert body["detail"] == {"limit_bytes": 100_000}
    # declared too large: refused before a byte is read
    res = send(app, "POST", "/recommend", content=b"x" * 100_001, headers=JSON)
    assert_error(res, 413, "larger than 100000 bytes")
    # under the limit, chunked, is read and answered
    ok = send(app, "POST", "/recommend", content=_small_chunks(), headers=JSON)
    assert ok.status_code == 200 and ok.json()["k"] == 3


async def _small_chunks():
    for part in (b'{"history": ["105",', b' "106"], "k"', b": 3}"):
        yield part


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_stops_reading_a_chunked_body_at_the_limit(rec):
    """Over a socket (uvicorn, loopback): the 413 arrives while the client still has most of
    its body to send, so the server read about the limit, not the body."""
    port, limit, total = _free_port(), 64 << 10, 64 << 20
    config = uvicorn.Config(create_app(rec, max_body_bytes=limit), "127.0.0.1", port)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        sent, reply = _send_chunked(port, total)
    finally:
        server.should_exit = True
        thread.join(10)
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:200]
    assert json.loads(payload)["error"] == "body_too_large"
    assert sent < total // 2


def _send_chunked(port: int, total: int) -> tuple[int, bytes]:
    """Send up to ``total`` body bytes in chunks, stopping once a reply is readable."""
    import select

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b'{"history": [' + b'"x",' * 16_000
        sent = 0
        while sent < total and not select.select([s], [], [], 0)[0]:
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        reply = b""
        while b"}" not in reply:
            part = s.recv(65536)
            if not part:
                break
            reply += part
    return sent, reply


def test_every_error_has_the_same_shape(rec, monkeypatch):
    app = create_app(rec, max_body_bytes=4_000, max_batch_requests=2)
    bad = {"content-type": "application/json"}
    assert_error(send(app, "POST", "/recommend", content=b'{"history": ["\xff"]}', headers=bad),
                 400, "not valid UTF-8")  # fmt: skip
    deep = b"[" * 1_500 + b"]" * 1_500
    assert_error(send(app, "POST", "/recommend", content=deep, headers=bad), 400, "nested")
    assert_error(send(app, "GET", "/items/nope"), 404, "unknown item id 'nope'")
    assert_error(send(app, "GET", "/no/such/path"), 404, "no endpoint at /no/such/path")
    res = send(app, "PUT", "/recommend")
    assert_error(res, 405, "PUT is not allowed on /recommend; use POST")
    assert res.headers["allow"] == "POST"
    assert_error(post_json(app, "/recommend", {"history": ["1"] * 2_000}), 413, "4000 bytes")
    res = send(app, "POST", "/recommend", content=b"history=1", headers={})
    assert_error(res, 415, "application/json", "no Content-Type")
    res = send(app, "POST", "/recommend", data={"history": "1"})
    assert_error(res, 415, "application/x-www-form-urlencoded")
    body = assert_error(post_json(app, "/recommend", {"history": ["105"], "k": 0}), 422, "k:")
    assert body["detail"][0]["loc"] == ["body", "k"]
    assert_error(send(app, "POST", "/recommend", content=b"{oops", headers=bad), 422, "JSON")

    def broken(queries):
        raise RuntimeError("model thread failed")

    monkeypatch.setattr(app.state.batcher, "fn", broken)
    res = post_json(app, "/recommend", {"history": ["105"]}, raise_app_exceptions=False)
    assert_error(res, 500, "internal error (RuntimeError)")
    busy = create_app(rec, max_queue=1)
    res = post_json(busy, "/recommend/batch", [{"history": ["105"]}, {"history": ["106"]}])
    assert_error(res, 503, "waiting")
    assert res.headers["retry-after"] == "1"


def test_openapi_documents_every_status_with_the_error_shape(rec):
    spec = send(create_app(rec), "GET", "/openapi.json").json()
    expected = {
        ("/recommend", "post"): {200, 400, 405, 413, 415, 422, 500, 503},
        ("/recommend/batch", "post"): {200, 400, 405, 413, 415, 422, 500, 503},
        ("/items/{item_id}", "get"): {200, 400, 404, 405, 413, 422, 500},
        ("/health", "get"): {200, 400, 405, 413, 500},
        ("/metadata", "get"): {200, 400, 405, 413, 500},
    }
    seen = set()
    for (path, method), codes in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert {int(c) for c in responses} == codes, path
        for code in codes - {200}:
            ref = responses[str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse") and responses[str(code)]["description"]
        seen |= codes
    assert set(ERROR_CODES) <= seen
    assert set(spec["components"]["schemas"]["ErrorResponse"]["properties"]) == {
        "error",
        "message",
        "detail",
    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's own 422


def test_docs_pages_and_their_assets_are_served_locally(rec):
    pytest.importorskip("fastapi_offline")
    app = create_app(rec)
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = send(app, "GET", page).text
        assert f"/docs-assets/{asset}" in html
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
        res = send(app, "GET", f"/docs-assets/{asset}")
        assert res.status_code == 200 and len(res.content) > 100_000
    assert send(app, "GET", "/docs-assets/swagger-ui.css").status_code == 200
    assert "/docs-assets/" not in json.dumps(send(app, "GET", "/openapi.json").json()["paths"])


def test_short_answers_say_so(rec):
    app = create_app(rec)
    body = post_json(app, "/recommend", {"history": EVERY, "k": 5}).json()
    assert (body["items"], body["returned"], body["short"], body["k"]) == ([], 0, True, 5)
    body = post_json(app, "/recommend", {"history": ["105"], "k": N_ITEMS}).json()
    assert (body["returned"], body["short"]) == (N_ITEMS - 1, True)
    assert len(body["items"]) == N_ITEMS - 1
    body = post_json(app, "/recommend", {"history": ["105"], "k": 3}).json()
    assert (body["returned"], body["short"]) == (3, False)
    kept = {"history": EVERY, "k": 5, "exclude_seen": False}
    batch = post_json(app, "/recommend/batch", [kept, {"history": EVERY, "k": 2}]).json()
    assert [(b["returned"], b["short"]) for b in batch] == [(5, False), (0, True)]


def test_echoed_ids_and_errors_are_capped(rec):
    app = create_app(rec)
    unknown = [f"missing-{i}" for i in range(MAX_ECHO + 50)]
    body = post_json(app, "/recommend", {"history": ["105", *unknown, *unknown], "k": 3}).json()
    assert body["unknown_items"] == unknown[:MAX_ECHO] and body["unknown_items_omitted"] == 50
    cands = ["106", *unknown[: MAX_ECHO + 10]]  # the catalogue allows 4 * 30 candidates
    body = post_json(app, "/recommend", {"history": ["105"], "candidates": cands}).json()
    assert len(body["unknown_candidates"]) == MAX_ECHO and body["unknown_candidates_omitted"] == 10
    # invalid ids everywhere: at most MAX_ERRORS structured errors, a short message
    res = post_json(app, "/recommend", {"history": [1.5] * 500, "k": 3})
    body = assert_error(res, 422, "history[0]", "(+")
    assert len(body["detail"]) == MAX_ERRORS
    # a client-sent key or id is shortened where a message repeats it
    res = post_json(app, "/recommend", {"history": [], "x" * 100_000: 1})
    assert len(res.text) < 2_000 and "Extra inputs" in assert_error(res, 422)["message"]
    assert len(send(app, "GET", "/items/" + "y" * 5_000).text) < 1_000


def test_the_python_answer_keeps_every_unknown_id(rec):
    ans = rec.recommend_ids(["105", *(f"m{i}" for i in range(300))], k=3)
    assert len(ans.unknown_items) == 300 and ans.returned == 3 and not ans.short


def test_docs_fall_back_to_fastapis_pages_without_the_assets(rec, monkeypatch):
    """Without fastapi-offline (a partial install) /docs is FastAPI's own CDN page."""
    import seqrec.serve.app as app_module

    monkeypatch.setattr(app_module, "local_assets", lambda: None)
    app = create_app(rec)
    assert "cdn.jsdelivr" in send(app, "GET", "/docs").text
    assert send(app, "GET", "/docs-assets/swagger-ui.css").status_code == 404
