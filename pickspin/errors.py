"""One API exception type and one JSON error handler, in OpenAI's error shape.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``
Statuses are mapped here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def json_object_body(expected: str = "a JSON object") -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why (413 over MAX_CONTENT_LENGTH)."""
    raw = request.get_data(cache=False)
    if not raw:
        raise APIError(400, f"request body is empty; expected {expected}", code="invalid_json")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"request body must be {expected}", code="invalid_json")
    return body


def error_response(err: APIError) -> Response:
    resp = jsonify(err.body())
    resp.status_code = err.status
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(err: APIError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status)
        msg = err.description or err.name
        if status == 413:
            msg = "request body is larger than the configured limit (router.max_body_bytes)"
        return error_response(APIError(status, msg, code=code))

    @app.errorhandler(Exception)
    def _unhandled(err: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_response(APIError(500, f"internal error: {type(err).__name__}", code="internal_error"))
