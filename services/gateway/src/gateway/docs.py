"""OpenAPI: error responses are problem documents, documented once here."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from gateway.problems import PROBLEM_MEDIA_TYPE, Problem

_PROBLEM = {"model": Problem}


def errors(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """Route `responses=` for these error statuses (401 and 422 are always there).

    `described` overrides a status's description: `errors(404, s409="...")`.
    """
    descriptions = {
        400: "The body is not JSON.",
        401: "Missing, malformed, badly signed, expired or over-long token.",
        403: "Only an admin may do this.",
        404: "Unknown, malformed, not yours, or not yet fully synced.",
        409: "Conflict.",
        422: "Invalid input; `errors` lists the fields.",
        503: "A dependency (the command bus) is unavailable.",
    }
    overrides = {int(key.removeprefix("s")): text for key, text in described.items()}
    descriptions.update(overrides)
    wanted = sorted({401, 422, *codes, *overrides})
    return {code: {**_PROBLEM, "description": descriptions.get(code, "Error")} for code in wanted}


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names: `list_deals`, `start_sync`."""
    return route.name


def install(app: FastAPI) -> None:
    """Serve error bodies as `application/problem+json` in the schema, as they are sent."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    if not str(status).startswith(("4", "5")):
                        continue
                    response["content"] = {
                        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
