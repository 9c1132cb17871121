"""RFC 9457 problem details: every error the API returns, with a stable `type` URI."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://chat-sync.example/problems/"

_TITLES = {
    400: ("bad-request", "The request is malformed"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "The request is not valid"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class FieldError(BaseModel):
    field: str = Field(examples=["limit"])
    location: str = Field(examples=["query"])
    message: str = Field(examples=["Input should be less than or equal to 100"])


class Problem(BaseModel):
    """An error, as `application/problem+json` (RFC 9457)."""

    type: str = Field(examples=[PROBLEM_BASE + "not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["deal not found"])
    task_id: str | None = Field(default=None, description="The active sync task (409 only).")
    status_url: str | None = Field(default=None, description="Its status (409 only).")
    errors: list[FieldError] | None = Field(
        default=None, description="The fields that failed validation (422 only)."
    )


class ProblemError(Exception):
    """Raised anywhere below a route; rendered as a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = headers
        self.extensions = extensions


def not_found(what: str) -> ProblemError:
    return ProblemError(404, f"{what} not found")


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    default_slug, title = _TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title,
        "status": status,
        "detail": detail,
        **{key: value for key, value in extensions.items() if value is not None},
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _location_and_field(loc: tuple[Any, ...]) -> tuple[str, str]:
    if not loc:
        return "body", ""
    location = str(loc[0])
    rest = [str(part) for part in loc[1:]]
    return location, ".".join(rest) or location


async def _on_problem(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return problem_response(
        error.status, error.detail, slug=error.slug, headers=error.headers, **error.extensions
    )


async def _on_validation(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = []
    for item in error.errors():
        location, field = _location_and_field(tuple(item.get("loc", ())))
        errors.append({"field": field, "location": location, "message": str(item.get("msg"))})
    fields = ", ".join(sorted({entry["field"] for entry in errors})) or "request"
    return problem_response(422, f"invalid: {fields}", errors=errors)


async def _on_http(_request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    detail = (
        error.detail
        if isinstance(error.detail, str)
        else _TITLES.get(error.status_code, ("", "Error"))[1]
    )
    return problem_response(error.status_code, detail, headers=dict(error.headers or {}))


async def _on_crash(request: Request, error: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, error=type(error).__name__)
    return problem_response(500, "an unexpected error occurred")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)
