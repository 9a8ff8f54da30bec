"""HTTP serving: FastAPI app over a `Recommender`, with requests micro-batched on the model
(`serve.batcher`: one scoring pass for many concurrent requests, on one model thread).

Endpoints: POST /recommend, POST /recommend/batch, GET /items/{item_id}, GET /health,
GET /metadata, and the docs (/docs, /redoc, /openapi.json; their assets are served locally:
`serve.docs`). Unknown item ids are reported back (`unknown_items`, at most `MAX_ECHO` of them
plus a count of the rest) and ignored; a history with no known item is answered from training
popularity (`"fallback": "popularity"`); an answer with fewer than k items says so (`returned`,
`short`). Every error has one JSON shape and every status is in the OpenAPI schema; request
bodies are limited on the bytes actually read (`serve.limits`, `serve.errors`).
"""

# no `from __future__ import annotations`: FastAPI must see the real types of the
# request models defined inside create_app
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI
from fastapi.encoders import jsonable_encoder
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

from seqrec.run.recommender import Answer, Query, Recommender
from seqrec.serve.batcher import MicroBatcher
from seqrec.serve.docs import add_local_docs, docs_urls, local_assets
from seqrec.serve.errors import (
    MAX_ECHO,
    clip,
    error_response,
    install_error_handlers,
    openapi_errors,
    require_json,
)
from seqrec.serve.limits import BodyLimit
from seqrec.version import __version__

__all__ = ["MicroBatcher", "create_app"]


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


class Recommendation(BaseModel):
    item_id: str
    score: float = Field(description="Model score (popularity count for the fallback).")
    rank: int


class RecommendResponse(BaseModel):
    items: list[Recommendation]
    k: int = Field(description="How many items were asked for.")
    returned: int = Field(description="How many items came back (at most k).")
    short: bool = Field(
        description="True when fewer than k items could be returned: the history (with "
        "exclude_seen) and the candidates leave fewer than k items, e.g. k equal to the "
        "catalogue size, or a history that covers the whole catalogue (then none)."
    )
    fallback: Literal["popularity"] | None = Field(
        None, description="'popularity' when the history held no known item."
    )
    unknown_items: list[str] = Field(
        description=f"History ids not in the catalogue (ignored), first seen first; at most "
        f"{MAX_ECHO}, the rest counted in unknown_items_omitted."
    )
    unknown_items_omitted: int = Field(description="Unknown history ids not listed.")
    unknown_candidates: list[str] = Field(
        description=f"Candidate ids not in the catalogue (ignored); at most {MAX_ECHO}."
    )
    unknown_candidates_omitted: int = Field(description="Unknown candidate ids not listed.")


class ItemResponse(BaseModel):
    item_id: str
    popularity: int | None = Field(description="Interactions in the training split.")
    metadata: dict[str, Any] | None


def _to_response(ans: Answer) -> dict[str, Any]:
    return {
        "items": [
            {"item_id": i, "score": s, "rank": r}
            for r, (i, s) in enumerate(zip(ans.items, ans.scores, strict=True), 1)
        ],
        "k": ans.k,
        "returned": ans.returned,
        "short": ans.short,
        "fallback": ans.fallback,
        "unknown_items": ans.unknown_items[:MAX_ECHO],
        "unknown_items_omitted": max(0, len(ans.unknown_items) - MAX_ECHO),
        "unknown_candidates": ans.unknown_candidates[:MAX_ECHO],
        "unknown_candidates_omitted": max(0, len(ans.unknown_candidates) - MAX_ECHO),
    }


def _request_model(rec: Recommender, max_history: int) -> type[BaseModel]:
    """The /recommend body, with bounds taken from the catalogue (shown in the schema)."""
    n_items = rec.n_items

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
        k: JsonInt = Field(min(10, n_items), ge=1, le=n_items, description="Items to return.")
        exclude_seen: StrictBool = Field(True, description="Never return history items.")
        candidates: list[ItemId] | None = Field(
            None,
            min_length=1,
            max_length=max(n_items, 1) * 4,
            description="Only return items from this list (original ids).",
        )

    return RecommendRequest


def create_app(
    rec: Recommender,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_history: int = 10_000,
    max_batch_requests: int = 256,
    max_body_bytes: int = 8 << 20,
    max_queue: int = 8192,
    index_name: str = "exact",
    index_report: dict[str, Any] | None = None,
) -> FastAPI:
    """The serving app for one loaded model (``rec`` should come from a package: popularity).

    ``max_body_bytes`` bounds every request body as read (413 past it), ``max_queue`` the
    queries waiting for the model (503 past it). ``index_report`` (`serve.index.choose_index`:
    the index chosen, its measured recall@10 and search effort) is shown under /metadata."""
    rec.lookup([])  # build the id map now, not on the first request
    batcher = MicroBatcher(rec.answer, max_batch, max_wait_ms, max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.close()

    assets = local_assets()
    app = FastAPI(
        title="seqrec",
        version=__version__,
        description=f"Next-item recommendations from a {rec.info.get('model', 'seqrec')} model "
        f"over {rec.n_items} items (top-K index: {index_name}; /metadata shows its measured "
        "recall). "
        f"Request bodies are limited to {max_body_bytes} bytes; every error has the body "
        "{error, message, detail}.",
        lifespan=lifespan,
        **docs_urls(assets),
    )
    app.state.batcher = batcher
    app.state.recommender = rec
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    install_error_handlers(app)
    add_local_docs(app, assets)
    _recommend_routes(app, rec, batcher, _request_model(rec, max_history), max_batch_requests)
    _catalogue_routes(app, rec, batcher, index_name, index_report)
    return app


def _recommend_routes(app, rec, batcher, request_model, max_batch_requests: int) -> None:
    RecommendRequest = request_model
    errors = openapi_errors(400, 405, 413, 415, 422, 500, 503)
    post = {"tags": ["recommend"], "responses": errors, "dependencies": [Depends(require_json)]}

    def to_query(req) -> Query:
        cands = None if req.candidates is None else [str(c) for c in req.candidates]
        return Query([str(x) for x in req.history], req.k, req.exclude_seen, cands)

    @app.post("/recommend", response_model=RecommendResponse, **post)
    async def recommend(req: RecommendRequest) -> dict[str, Any]:
        """Top-K next items for one history (original item ids)."""
        (ans,) = await batcher.submit([to_query(req)])
        return _to_response(ans)

    @app.post("/recommend/batch", response_model=list[RecommendResponse], **post)
    async def recommend_batch(
        reqs: Annotated[list[RecommendRequest], Body(min_length=1, max_length=max_batch_requests)],
    ) -> list[dict[str, Any]]:
        """Several requests in one call; answers come back in the same order."""
        answers = await batcher.submit([to_query(r) for r in reqs])
        return [_to_response(a) for a in answers]


def _catalogue_routes(app, rec, batcher, index_name: str, index_report=None) -> None:
    @app.get(
        "/items/{item_id}",
        response_model=ItemResponse,
        responses=openapi_errors(400, 404, 405, 413, 422, 500),
        tags=["catalogue"],
    )
    async def item(item_id: str):
        """Training popularity and metadata of one item (original id)."""
        info = rec.item_info(item_id)
        if info is None:
            return error_response(
                404,
                f"unknown item id {clip(item_id)!r}: not in the model's catalogue; use an id "
                "from the model's training data",
            )
        return info

    service = {"tags": ["service"], "responses": openapi_errors(400, 405, 413, 500)}

    @app.get("/health", **service)
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and answering."""
        return {"status": "ok", "model": rec.info.get("model"), "n_items": rec.n_items}

    info = rec.info
    static = {
        "model": info.get("model"),
        "n_items": rec.n_items,
        "max_len": rec.max_len,
        "dataset": info.get("dataset"),
        "metrics": info.get("metrics"),
        "protocol": info.get("protocol"),
        "params": info.get("params"),
        "item_metadata": info.get("item_metadata"),
        "package": {
            k: info.get(k) for k in ("format", "format_version", "seqrec_version", "created")
        },
        "server": {
            "seqrec_version": __version__,
            "index": index_name,
            "index_build": index_report,
        },
    }

    @app.get("/metadata", **service)
    async def metadata() -> dict[str, Any]:
        """Model, catalogue size, dataset, the run's metrics and protocol, package version."""
        return jsonable_encoder({**static, "micro_batching": batcher.stats()})
