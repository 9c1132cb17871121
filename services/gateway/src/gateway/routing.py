"""Every route answers with and without its trailing slash, without a redirect."""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class Router(APIRouter):
    """Registers each path twice; only the slashed one appears in the OpenAPI document."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        alternate = path.removesuffix("/") if path.endswith("/") else path + "/"
        if alternate:
            kwargs["include_in_schema"] = False
            kwargs.pop("operation_id", None)
            super().add_api_route(alternate, endpoint, **kwargs)
