"""Rows and items into the API's JSON shapes."""

from typing import Any

from fastapi import Request

from common.models import Customer, Deal
from gateway.deals.schemas import CustomerOut, LastMessage, ReadSync


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def api_url(request: Request, path: str) -> str:
    """An absolute URL on this gateway for an `/api/v1/...` path."""
    return str(request.base_url).rstrip("/") + path


def customer_out(request: Request, customer: Customer) -> CustomerOut:
    has_avatar = bool(customer.avatar_key or customer.avatar_url)
    return CustomerOut(
        id=str(customer.id),
        external_id=customer.external_id,
        name=customer.name,
        username=customer.username,
        avatar=api_url(request, f"/api/v1/customers/{customer.id}/avatar/") if has_avatar else None,
    )


def _last_message(preview: dict[str, Any] | None) -> LastMessage | None:
    if not preview:
        return None
    return LastMessage(
        text=str(preview.get("text") or ""),
        direction=str(preview.get("direction") or "incoming"),
        date=preview.get("date"),
    )


def deal_fields(request: Request, deal: Deal, customer: Customer | None) -> dict[str, Any]:
    return {
        "id": str(deal.id),
        "source": deal.source,
        "external_id": deal.external_id,
        "business_connection_id": deal.business_connection_id,
        "chat_id": _str(deal.chat_id),
        "owner_user_id": _str(deal.owner_user_id),
        "customer": customer_out(request, customer) if customer is not None else None,
        "last_message_id": deal.last_message_id,
        "last_message_at": deal.last_message_at,
        "last_message": _last_message(deal.last_message),
        "total_messages": deal.total_messages,
        "unread_count": deal.unread_count,
        "read_up_to": deal.read_up_to,
        "read_sync": ReadSync(status=deal.read_sync_status, reason=deal.read_sync_reason),
        "created_at": deal.created_at,
        "updated_at": deal.updated_at,
    }
