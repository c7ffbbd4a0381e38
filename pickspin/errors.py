"""One API exception type and one JSON error handler, in OpenAI's error shape.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``
Statuses are mapped here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
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


#: Bodies nested deeper than this are refused (Python's parser and encoder recurse per level).
DEFAULT_MAX_JSON_DEPTH = 128


def _reject_constant(name: str) -> Any:
    raise APIError(400, f"request body is not valid JSON: {name} is not a JSON number (NaN and Infinity are "
                        "not allowed)", code="invalid_json")


def _finite_float(text: str) -> float:
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise APIError(400, f"request body is not valid JSON: number {text[:40]}... is out of range for a "
                            "double", code="invalid_json")
    return v


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True if ``obj`` nests arrays/objects more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, dict | list))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o if isinstance(v, dict | list))
    return False


def _read_body() -> bytes:
    """The raw body, with transport errors as 4xx: a malformed chunked encoding is a 400, a body over
    MAX_CONTENT_LENGTH a 413 (also when it is chunked and has no Content-Length)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if chunked and request.content_length is None and limit is not None:
            # No Content-Length to check up front: read at most one byte more than the limit from the
            # server's de-chunking stream ourselves (werkzeug would read an empty stream, or truncate).
            sock = request.environ.get("gunicorn.socket")
            timeout = current_app.config.get("PICKSPIN_CLIENT_READ_TIMEOUT_S")
            if sock is not None and timeout:
                sock.settimeout(timeout)  # each read must make progress: a stalled client gets a 408
            try:
                raw: bytes = request.environ["wsgi.input"].read(limit + 1)
            finally:
                if sock is not None and timeout:
                    sock.settimeout(None)
            if len(raw) > limit:
                raise RequestEntityTooLarge()
            return raw
        return request.get_data(cache=False)
    except (APIError, RequestEntityTooLarge):
        raise
    except TimeoutError:
        raise APIError(408, "request body not received in time", code="request_timeout") from None
    except ClientDisconnected:
        raise APIError(400, "request body ended early (client disconnected or Content-Length too large)",
                       code="incomplete_body") from None
    except Exception as e:
        # gunicorn raises its own errors for a malformed chunked body (InvalidChunkSize, ...)
        if type(e).__module__.startswith(("gunicorn.http", "werkzeug")) or isinstance(e, ValueError | OSError):
            raise APIError(400, f"malformed request body ({type(e).__name__}): the transfer encoding is invalid",
                           code="invalid_body_encoding") from None
        raise


def json_object_body(expected: str = "a JSON object", *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx in OpenAI's shape that says why: 400 for invalid JSON,
    NaN/Infinity, numbers out of range, integers too long to convert, nesting deeper than ``max_depth``
    or a malformed chunked encoding; 413 over MAX_CONTENT_LENGTH."""
    raw = _read_body()
    if not raw:
        raise APIError(400, f"request body is empty; expected {expected}", code="invalid_json")
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, f"request body is nested too deeply (limit {max_depth} levels)",
                       code="json_too_deep") from None
    except ValueError as e:  # e.g. an integer over sys.get_int_max_str_digits() digits
        raise APIError(400, f"request body is not valid JSON: a number is out of range ({e})",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"request body must be {expected}", code="invalid_json")
    # cheap test first: a body cannot nest deeper than it has brackets
    if raw.count(b"[") + raw.count(b"{") > max_depth and _depth_exceeds(body, max_depth):
        raise APIError(400, f"request body is nested too deeply (limit {max_depth} levels)", code="json_too_deep")
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
