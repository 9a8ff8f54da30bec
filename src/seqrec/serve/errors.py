"""One error shape for every HTTP error, the request-body limit, and both in the OpenAPI schema.

Every error the server sends, whatever raised it (request validation, routing, the body limit,
the content type, the model thread, an unexpected exception), has the body
``{"error": code, "message": one line, "detail": ... or null}``, so a client needs one parser
and a person reads one line. `openapi_errors` documents each status an operation can answer
with that shape, so the schema lists every code the server sends.

The body limit itself is `serve.limits.BodyLimit`; its 413 is `BodyTooLarge`, defined here so
that every handler knows it. What the server echoes back is bounded too: item ids and
validation errors are cut to a documented number (`MAX_ECHO`, `MAX_ERRORS`) with a count of the
rest, and long ids or keys are shortened in messages (`MAX_TEXT`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from seqrec.errors import SeqrecError
from seqrec.serve.batcher import Overloaded

MAX_ECHO = 100  # distinct unknown ids listed per answer (the rest are counted)
MAX_ERRORS = 20  # validation errors listed in a 422's detail
MAX_TEXT = 64  # characters of a client-sent id or key repeated in a message

ERROR_CODES = {
    400: ("bad_request", "The request could not be read (invalid UTF-8, nesting, a bad id)."),
    404: ("not_found", "No such item (or no such endpoint)."),
    405: ("method_not_allowed", "This path does not take that method (see the Allow header)."),
    413: ("body_too_large", "The request body is over the server's limit (chunked or not)."),
    415: ("unsupported_media_type", "POST bodies must be JSON (Content-Type: application/json)."),
    422: ("invalid_request", "The JSON does not match the request schema."),
    500: ("internal_error", "The server failed; its log has the details."),
    503: ("unavailable", "Too many queries are waiting; retry after the Retry-After seconds."),
}


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Machine-readable code: " + ", ".join(
        f"{code} ({status})" for status, (code, _) in ERROR_CODES.items()
    ))  # fmt: skip
    message: str = Field(description="One line: what was wrong and how to fix it.")
    detail: Any = Field(
        None,
        description=f"Structured detail or null; for 422 the first {MAX_ERRORS} validation "
        "errors as {type, loc, msg}.",
    )


def openapi_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of an operation that can answer with these error statuses."""
    return {s: {"model": ErrorResponse, "description": ERROR_CODES[s][1]} for s in statuses}


def clip(text: Any, most: int = MAX_TEXT) -> str:
    """A client-sent string, shortened for a message (ids and keys can be megabytes long)."""
    text = str(text)
    return text if len(text) <= most else text[: most - 1] + "…"


def error_response(
    status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    code = ERROR_CODES[status][0] if status in ERROR_CODES else f"http_{status}"
    body = {"error": code, "message": message, "detail": detail}
    return JSONResponse(status_code=status, content=body, headers=headers)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the bytes read pass the limit (a 413, never a 400)."""

    def __init__(self, limit: int):
        super().__init__(413, too_large(limit))
        self.limit = limit


def too_large(limit: int) -> str:
    mib = f" ({limit / 2**20:.3g} MiB)" if limit >= 2**20 else ""
    return (
        f"request body is larger than {limit} bytes{mib}; "
        "send fewer or shorter histories per request"
    )


def require_json(request: Request) -> None:
    """Dependency of the POST endpoints: a body that is not declared JSON gets 415."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        got = f"Content-Type {clip(media)!r}" if media else "no Content-Type"
        raise HTTPException(415, f"send the body as JSON with Content-Type: application/json "
                                 f"(got {got})")  # fmt: skip


def _where(loc: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{clip(p)}" for p in loc).lstrip(".")


# the fix for the pydantic errors whose own text ("Field required") does not say it
_FIXES = {
    "json_invalid": "send one JSON object",
    "body_missing": "send a JSON body",
    "missing": "add the missing field",
    "extra_forbidden": "remove the fields the schema (/docs) does not list",
}


def validation_summary(errors: list[dict[str, Any]], most: int = 5) -> str:
    """One line for a list of pydantic errors: `history[3]: ...; k: ...`, then the fix
    where pydantic's text does not give it."""
    found: dict[str, str] = {}
    kinds = set()
    for e in errors:
        loc = list(e.get("loc", ()))[1:]  # drop "body"
        msg = e.get("msg", "invalid")
        kinds.add("body_missing" if e.get("type") == "missing" and not loc else e.get("type"))
        if e.get("type") == "json_invalid":
            where, msg = "body", f"invalid JSON ({msg.lower()} at character {loc[0] if loc else 0})"
        else:
            if loc and loc[-1] in ("str", "int"):  # the two branches of an item-id union
                loc, msg = loc[:-1], "item ids must be strings or integers"
            where = _where(loc)
        found.setdefault(where or "body", msg)
    parts = [f"{w}: {m}" for w, m in list(found.items())[:most]]
    fixes = [fix for kind, fix in _FIXES.items() if kind in kinds]
    more = f" (+{len(found) - most} more)" if len(found) > most else ""
    return "; ".join(parts) + more + "".join(f"; {fix}" for fix in fixes[:1])


def _parse_failure(cause: BaseException | None) -> str:
    """The one line for a body FastAPI could not parse (it only says 'error parsing')."""
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not valid UTF-8 (byte {cause.start}); send JSON text in UTF-8"
    if isinstance(cause, RecursionError):
        return "request body is nested too deeply to parse; send a flat JSON object"
    what = type(cause).__name__ if cause is not None else "unknown reason"
    return f"request body could not be parsed ({what}); send one JSON object"


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the app can meet to `error_response`."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        for e in errors:
            e["loc"] = [p if isinstance(p, int) else clip(p) for p in e.get("loc", ())]
        return error_response(422, validation_summary(errors), errors[:MAX_ERRORS])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        status, headers = exc.status_code, getattr(exc, "headers", None)
        path = clip(request.url.path)
        if status == 404 and exc.detail == "Not Found":
            message = f"no endpoint at {path}; use one of those listed at /docs"
        elif status == 405:
            allowed = (headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {path}; use {allowed or 'another'}"
        elif status == 400 and exc.detail == "There was an error parsing the body":
            message = _parse_failure(exc.__cause__)
        else:
            message = str(exc.detail)
        detail = {"limit_bytes": exc.limit} if isinstance(exc, BodyTooLarge) else None
        return error_response(status, message, detail, headers)

    @app.exception_handler(SeqrecError)
    async def bad_input(request: Request, exc: SeqrecError):
        return error_response(400, str(exc))

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        return error_response(503, str(exc), None, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return error_response(500, message)
