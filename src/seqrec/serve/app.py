"""HTTP serving: FastAPI app over a `Recommender`, with requests micro-batched on the model.

Concurrent requests are collected for up to ``max_wait_ms`` (or ``max_batch`` requests) and
answered by one `Recommender.answer` call, i.e. one `score_chunks` pass per exclude_seen value,
on a single model thread, so the event loop never blocks on torch.

Endpoints: POST /recommend, POST /recommend/batch, GET /items/{item_id}, GET /health,
GET /metadata, and the OpenAPI docs (/docs, /openapi.json). Unknown item ids are reported back
(`unknown_items`) and ignored; a history with no known item is answered from training popularity
(`"fallback": "popularity"`); malformed requests get 422 with a one-line `message`.
"""

# no `from __future__ import annotations`: FastAPI must see the real types of the
# request models defined inside create_app
import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

from seqrec.errors import SeqrecError
from seqrec.run.recommender import Answer, Query, Recommender
from seqrec.version import __version__


def _integral(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer: accept it as 5 (2.5, "5" and true stay invalid)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _valid_text(value: str | int) -> str | int:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "invalid_text", "item ids must be valid Unicode text (no lone surrogates)"
            ) from None
    return value


JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]
ItemId = Annotated[StrictStr | StrictInt, BeforeValidator(_integral), AfterValidator(_valid_text)]


class MicroBatcher:
    """Collects concurrent queries into one call of ``fn`` (run on one worker thread)."""

    def __init__(
        self, fn: Callable[[list[Query]], list[Answer]], max_batch: int, max_wait_ms: float
    ):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0
        self.largest = 0

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000.0,
            "batches": self.batches,
            "requests": self.requests,
            "mean_batch": self.requests / self.batches if self.batches else 0.0,
            "largest_batch": self.largest,
        }

    def _ensure_worker(self) -> None:
        # started lazily on the loop that serves requests (a test client may use a new loop)
        loop = asyncio.get_running_loop()
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="seqrec-model")
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._worker(self._queue))

    async def submit(self, queries: Sequence[Query]) -> list[Answer]:
        self._ensure_worker()
        assert self._loop is not None and self._queue is not None
        futures = []
        for q in queries:
            fut = self._loop.create_future()
            self._queue.put_nowait((q, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _worker(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [(q, f) for q, f in batch if not f.done()]  # drop cancelled requests
            if not batch:
                continue
            queries = [q for q, _ in batch]
            try:
                answers = await loop.run_in_executor(self.executor, self.fn, queries)
            except Exception:
                # one bad query must not fail its neighbours: answer each on its own
                answers = []
                for q in queries:
                    try:
                        answers.append((await loop.run_in_executor(self.executor, self.fn, [q]))[0])
                    except Exception as err:
                        answers.append(err)
            self.batches += 1
            self.requests += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, fut), ans in zip(batch, answers, strict=True):
                if fut.done():
                    continue
                if isinstance(ans, Exception):
                    fut.set_exception(ans)
                else:
                    fut.set_result(ans)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError, RuntimeError):
                await self._task
        self._task = None
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


class Recommendation(BaseModel):
    item_id: str
    score: float = Field(description="Model score (popularity count for the fallback).")
    rank: int


class RecommendResponse(BaseModel):
    items: list[Recommendation]
    k: int
    fallback: Literal["popularity"] | None = Field(
        None, description="'popularity' when the history held no known item."
    )
    unknown_items: list[str] = Field(description="History ids not in the catalogue (ignored).")
    unknown_candidates: list[str] = Field(
        description="Candidate ids not in the catalogue (ignored)."
    )


class ItemResponse(BaseModel):
    item_id: str
    popularity: int | None = Field(description="Interactions in the training split.")
    metadata: dict[str, Any] | None


class ErrorResponse(BaseModel):
    detail: str


def _to_response(ans: Answer, k: int) -> dict[str, Any]:
    return {
        "items": [
            {"item_id": i, "score": s, "rank": r}
            for r, (i, s) in enumerate(zip(ans.items, ans.scores, strict=True), 1)
        ],
        "k": k,
        "fallback": ans.fallback,
        "unknown_items": ans.unknown_items,
        "unknown_candidates": ans.unknown_candidates,
    }


def _summary(errors: list[dict[str, Any]], most: int = 5) -> str:
    """One line for a list of pydantic errors: `history[3]: ...; k: ...`."""
    found: dict[str, str] = {}
    for e in errors:
        loc = list(e.get("loc", ()))[1:]  # drop "body"
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            where, msg = "body", f"invalid JSON ({msg.lower()} at character {loc[0] if loc else 0})"
        else:
            if loc and loc[-1] in ("str", "int"):  # the two branches of an item-id union
                loc, msg = loc[:-1], "item ids must be strings or integers"
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        found.setdefault(where or "body", msg)
    parts = [f"{w}: {m}" for w, m in list(found.items())[:most]]
    return "; ".join(parts) + (f" (+{len(found) - most} more)" if len(found) > most else "")


def create_app(
    rec: Recommender,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_history: int = 10_000,
    max_batch_requests: int = 256,
    max_body_bytes: int = 8 << 20,
    index_name: str = "exact",
) -> FastAPI:
    """The serving app for one loaded model (``rec`` should come from a package: popularity)."""
    n_items = rec.n_items
    default_k = min(10, n_items)
    max_candidates = max(n_items, 1) * 4
    rec.lookup([])  # build the id map now, not on the first request
    batcher = MicroBatcher(rec.answer, max_batch, max_wait_ms)

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"history": rec.item_ids[1:4].tolist(), "k": 5}]},
        )
        history: list[ItemId] = Field(
            max_length=max_history,
            description="Original item ids, oldest first. Unknown ids are reported and ignored; "
            "an empty (or all-unknown) history gets the popularity fallback.",
        )
        k: JsonInt = Field(default_k, ge=1, le=n_items, description="Items to return.")
        exclude_seen: StrictBool = Field(True, description="Never return history items.")
        candidates: list[ItemId] | None = Field(
            None,
            min_length=1,
            max_length=max_candidates,
            description="Only return items from this list (original ids).",
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(
        title="seqrec",
        version=__version__,
        description=f"Next-item recommendations from a {rec.info.get('model', 'seqrec')} model "
        f"over {n_items} items (exact top-K unless the server runs with --index faiss).",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.recommender = rec

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body_bytes):
            return JSONResponse(
                status_code=413,
                content={"detail": f"request body is larger than {max_body_bytes} bytes"},
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        message = _summary(errors)
        return JSONResponse(
            status_code=422, content=jsonable_encoder({"detail": errors, "message": message})
        )

    @app.exception_handler(SeqrecError)
    async def bad_input(request: Request, exc: SeqrecError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    def to_query(req: RecommendRequest) -> Query:
        cands = None if req.candidates is None else [str(c) for c in req.candidates]
        return Query([str(x) for x in req.history], req.k, req.exclude_seen, cands)

    @app.post("/recommend", response_model=RecommendResponse, tags=["recommend"])
    async def recommend(req: RecommendRequest) -> dict[str, Any]:
        """Top-K next items for one history (original item ids)."""
        (ans,) = await batcher.submit([to_query(req)])
        return _to_response(ans, req.k)

    @app.post("/recommend/batch", response_model=list[RecommendResponse], tags=["recommend"])
    async def recommend_batch(
        reqs: Annotated[list[RecommendRequest], Body(min_length=1, max_length=max_batch_requests)],
    ) -> list[dict[str, Any]]:
        """Several requests in one call; answers come back in the same order."""
        answers = await batcher.submit([to_query(r) for r in reqs])
        return [_to_response(a, r.k) for a, r in zip(answers, reqs, strict=True)]

    @app.get(
        "/items/{item_id}",
        response_model=ItemResponse,
        responses={404: {"model": ErrorResponse, "description": "Unknown item id."}},
        tags=["catalogue"],
    )
    async def item(item_id: str):
        """Training popularity and metadata of one item (original id)."""
        info = rec.item_info(item_id)
        if info is None:
            return JSONResponse(
                status_code=404,
                content={"detail": f"unknown item id {item_id!r}: not in the model's catalogue"},
            )
        return info

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": rec.info.get("model"), "n_items": n_items}

    static = {
        "model": rec.info.get("model"),
        "n_items": n_items,
        "max_len": rec.max_len,
        "dataset": rec.info.get("dataset"),
        "metrics": rec.info.get("metrics"),
        "protocol": rec.info.get("protocol"),
        "params": rec.info.get("params"),
        "item_metadata": rec.info.get("item_metadata"),
        "package": {
            "format": rec.info.get("format"),
            "format_version": rec.info.get("format_version"),
            "seqrec_version": rec.info.get("seqrec_version"),
            "created": rec.info.get("created"),
        },
        "server": {"seqrec_version": __version__, "index": index_name},
    }

    @app.get("/metadata", tags=["service"])
    async def metadata() -> dict[str, Any]:
        """Model, catalogue size, dataset, the run's metrics and protocol, package version."""
        return jsonable_encoder({**static, "micro_batching": batcher.stats()})

    return app
