"""Every failure of ``lima serve`` in OpenAI's error shape ``{"error": {"message", "type",
"param", "code"}}``: 400 for a bad request (FastAPI's 422 included), 401 for a wrong key, 404 for
an unknown model, 413 for a body over the limit, 5xx (``server_error``) for a fault of ours.

>>> _param(("body", "messages", 0, "role"))
'messages[0].role'
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from limakit.generation.api_schemas import error_body

SURROGATE = "contains a lone UTF-16 surrogate, which is not Unicode text"


class ApiError(Exception):
    """An error answered in OpenAI's shape; its type follows from the status."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    @property
    def kind(self) -> str:
        if self.status >= 500:
            return "server_error"
        return "authentication_error" if self.status == 401 else "invalid_request_error"

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.kind, self.param, self.code)
        return JSONResponse(body, status_code=self.status)


def too_large() -> ApiError:
    return ApiError(
        413, "the request body is larger than this server accepts", code="request_too_large"
    )


def _param(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``; None for the body itself."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or None


def _validation_error(exc: RequestValidationError) -> ApiError:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON ({first.get('msg')})")
    param = _param(tuple(first.get("loc", ())))
    if param is None and first.get("type") in ("model_attributes_type", "dict_type", "missing"):
        # Also what a body without ``Content-Type: application/json`` gets: it is not parsed.
        return ApiError(
            400, "the request body must be a JSON object sent as Content-Type: application/json"
        )
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "string_unicode":  # pydantic's word for a lone surrogate
        # In a value, the error is at that value; in a field name, at the object holding it.
        loc = tuple(first.get("loc", ()))
        path = loc[1:] if loc[:1] == ("body",) else loc
        is_value = isinstance(_value_at(exc.body, path), str)
        msg = SURROGATE if is_value else f"a field name {SURROGATE}"
    return ApiError(400, f"{param}: {msg}" if param else f"the request body: {msg}", param)


def _value_at(body, path: tuple):
    """What ``path`` (keys and indexes) leads to in the parsed body; None where it leads nowhere."""
    for part in path:
        try:
            body = body[part]
        except (KeyError, IndexError, TypeError):
            return None
    return body


def install_errors(app: FastAPI) -> None:
    """One place that turns every failure into OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_http, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_http, exc: RequestValidationError):
        return _validation_error(exc).response()  # 400, as OpenAI answers (not FastAPI's 422)

    @app.exception_handler(HTTPException)
    async def http_error(_http, exc: HTTPException):
        if exc.status_code == 413:
            return too_large().response()
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def fault(_http, exc: Exception):
        return ApiError(500, f"internal server error ({type(exc).__name__})").response()
