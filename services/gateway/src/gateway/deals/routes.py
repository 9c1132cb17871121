"""`/api/v1/deals/...`: the list, one deal, its messages, read and reply commands."""

import uuid
from typing import Annotated, Any

from fastapi import Body, Path, Query, Request, Response, status
from sqlalchemy import select

from common.events import DealMarkRead, MessageSend
from common.models import SendRequest
from gateway import commands
from gateway.deals import listing, messages, queries
from gateway.deals.schemas import (
    EXAMPLE_DEAL_ID,
    DealDetail,
    DealOut,
    MarkReadIn,
    MarkReadOut,
    MessageOut,
    RequestStatus,
    SendIn,
    SendOut,
)
from gateway.deals.views import api_url, deal_fields
from gateway.deps import S3, Bus, CurrentUser, Dynamo, ResourcesDep, SessionDep, SettingsDep
from gateway.docs import errors
from gateway.inputs import CLIENT_REQUEST_ID, StorableText, UtcDatetime, parse_id
from gateway.pagination import Page, decode_cursor, encode_cursor, invalid_cursor, page_url
from gateway.problems import ProblemError, not_found
from gateway.routing import Router

router = Router(tags=["deals"])

DETAIL_MESSAGES = 50
DealId = Annotated[str, Path(description="The deal's id.", examples=[EXAMPLE_DEAL_ID])]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1-100.")]
Cursor = Annotated[
    str | None, Query(max_length=1024, description="Opaque; from a `next`/`previous` URL.")
]


@router.get(
    "/api/v1/deals/",
    response_model=Page[DealOut],
    responses=errors(),
    summary="List visible, fully synced deals",
)
async def list_deals(
    request: Request,
    resources: ResourcesDep,
    user: CurrentUser,
    limit: Limit = 20,
    cursor: Cursor = None,
    source: Annotated[str | None, Query(pattern="^(telegram|external)$")] = None,
    business_connection_id: Annotated[StorableText | None, Query(max_length=256)] = None,
    unread: Annotated[bool, Query(description="Only deals with unread messages.")] = False,
    updated_since: Annotated[
        UtcDatetime | None,
        Query(description="Change feed: deals updated at or after this, oldest change first."),
    ] = None,
) -> Response:
    """Newest activity first (`last_message_at` desc, id desc); with `updated_since`, the change
    feed (`updated_at` asc, id asc). A walk visits every deal not updated meanwhile once."""
    filters = queries.Filters(source, business_connection_id, unread, updated_since)
    walk: queries.Walk = "u" if updated_since is not None else "a"
    position = None
    if cursor is not None:
        position = queries.Position.from_payload(decode_cursor(cursor), walk)
    # The connection is taken here rather than by a dependency: one fewer to solve per page.
    async with resources.reads.acquire() as reader:
        rows, more = await listing.list_page(reader, user, filters, limit, position)

    def at(index: int, direction: queries.Direction) -> str:
        return encode_cursor(listing.position_of(rows[index], walk, direction).payload())

    backwards = position is not None and position.direction == "p"
    next_cursor = previous_cursor = None
    if rows:
        if more or backwards:
            next_cursor = at(-1, "n")
        if position is not None and (more or not backwards):
            previous_cursor = at(0, "p")
    # Written once here: the response model above is the schema this JSON follows.
    body = listing.render(
        rows,
        api_url(request, ""),
        page_url(request, next_cursor),
        page_url(request, previous_cursor),
    )
    return Response(body, media_type="application/json")


async def _visible(session: SessionDep, user: CurrentUser, deal_id: str) -> Any:
    found = await queries.get_visible(session, user, parse_id(deal_id, "deal"))
    if found is None:
        raise not_found("deal")
    return found


def _messages_url(request: Request, deal_id: uuid.UUID, cursor: dict[str, str]) -> str:
    path = f"/api/v1/deals/{deal_id}/messages/?cursor={encode_cursor(cursor)}"
    return api_url(request, path)


@router.get(
    "/api/v1/deals/{deal_id}/", responses=errors(404), summary="One deal with its latest messages"
)
async def get_deal(
    request: Request,
    deal_id: DealId,
    session: SessionDep,
    dynamo: Dynamo,
    s3: S3,
    settings: SettingsDep,
    user: CurrentUser,
) -> DealDetail:
    deal, customer = await _visible(session, user, deal_id)
    items, more = await messages.message_page(
        dynamo, settings.dynamodb_messages_table, str(deal.id), limit=DETAIL_MESSAGES
    )
    views = await messages.render(
        dynamo, s3, table=settings.dynamodb_messages_table, bucket=settings.s3_bucket, items=items
    )
    views.reverse()
    older = _messages_url(request, deal.id, {"o": items[-1]["sk"]}) if more else None
    return DealDetail(
        **deal_fields(request, deal, customer),
        messages=[MessageOut.model_validate(view) for view in views],
        messages_next=older,
    )


def _message_position(cursor: str | None) -> tuple[str | None, str | None]:
    if cursor is None:
        return None, None
    payload = decode_cursor(cursor)
    older, newer = payload.get("o"), payload.get("n")
    key = older if older is not None else newer
    if (older is None) == (newer is None) or not isinstance(key, str):
        raise invalid_cursor()
    if not key.startswith(messages.MESSAGE_PREFIX) or len(key) > 512:
        raise invalid_cursor()
    return older, newer


@router.get(
    "/api/v1/deals/{deal_id}/messages/",
    responses=errors(404),
    summary="A deal's whole history, newest first",
)
async def list_messages(
    request: Request,
    deal_id: DealId,
    session: SessionDep,
    dynamo: Dynamo,
    s3: S3,
    settings: SettingsDep,
    user: CurrentUser,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[MessageOut]:
    older, newer = _message_position(cursor)
    deal, _customer = await _visible(session, user, deal_id)
    table = settings.dynamodb_messages_table
    items, more = await messages.message_page(
        dynamo, table, str(deal.id), limit=limit, older_than=older, newer_than=newer
    )
    views = await messages.render(dynamo, s3, table=table, bucket=settings.s3_bucket, items=items)
    next_cursor = previous_cursor = None
    if items:
        if more or newer is not None:
            next_cursor = encode_cursor({"o": items[-1]["sk"]})
        if cursor is not None and (more or newer is None):
            previous_cursor = encode_cursor({"n": items[0]["sk"]})
    return Page[MessageOut](
        next=page_url(request, next_cursor),
        previous=page_url(request, previous_cursor),
        results=[MessageOut.model_validate(view) for view in views],
    )


@router.post(
    "/api/v1/deals/{deal_id}/read/",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 503, s404="Unknown deal, or a `message_id` not in it."),
    summary="Mark the deal read up to a message (the newest by default)",
)
async def mark_read(
    deal_id: DealId,
    session: SessionDep,
    bus: Bus,
    settings: SettingsDep,
    user: CurrentUser,
    body: Annotated[MarkReadIn | None, Body()] = None,
) -> MarkReadOut:
    """The sync-worker records the horizon and tells Telegram (`deal.mark_read` command)."""
    deal, _customer = await _visible(session, user, deal_id)
    message_id = body.message_id if body is not None else None
    if message_id is not None and not await queries.message_exists(session, deal.id, message_id):
        raise not_found("message")
    horizon = message_id if message_id is not None else deal.last_message_id
    command = DealMarkRead(deal_id=deal.id, message_id=message_id, requested_by=user.user_id)
    await commands.send(bus, command, timeout=settings.publish_confirm_timeout)
    return MarkReadOut(deal_id=str(deal.id), read_up_to=horizon)


def _status_url(request: Request, deal_id: uuid.UUID, client_request_id: str) -> str:
    return api_url(request, f"/api/v1/deals/{deal_id}/messages/requests/{client_request_id}/")


@router.post(
    "/api/v1/deals/{deal_id}/messages/",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 404, 409, 503, s409="Only Telegram deals can be replied to."),
    summary="Reply in the chat (sent at most once)",
)
async def send_message(
    request: Request,
    deal_id: DealId,
    body: SendIn,
    session: SessionDep,
    bus: Bus,
    settings: SettingsDep,
    user: CurrentUser,
) -> SendOut:
    """Queues a `message.send` command. Telegram has no idempotency key, so a reply is sent **at
    most once**: a repeated `client_request_id` sends nothing new, and a request a worker was
    sending when it crashed ends `unknown` rather than being sent twice."""
    deal, _customer = await _visible(session, user, deal_id)
    if deal.source != "telegram":
        raise ProblemError(409, "only Telegram deals can be replied to", slug="not-replyable")
    client_request_id = body.client_request_id or str(uuid.uuid4())
    command = MessageSend(
        deal_id=deal.id,
        client_request_id=client_request_id,
        text=body.text,
        reply_to_message_id=body.reply_to_message_id,
        requested_by=user.user_id,
    )
    await commands.send(bus, command, timeout=settings.publish_confirm_timeout)
    return SendOut(
        client_request_id=client_request_id,
        status_url=_status_url(request, deal.id, client_request_id),
    )


@router.get(
    "/api/v1/deals/{deal_id}/messages/requests/{client_request_id}/",
    responses=errors(404),
    summary="Where a reply request stands",
)
async def get_send_request(
    deal_id: DealId,
    client_request_id: Annotated[str, Path(examples=["3f0c1d2e-reply-1"])],
    session: SessionDep,
    user: CurrentUser,
) -> RequestStatus:
    """`queued` until the sync-worker records the request (no row yet)."""
    deal, _customer = await _visible(session, user, deal_id)
    if not CLIENT_REQUEST_ID.fullmatch(client_request_id):
        raise not_found("request")
    row = await session.scalar(
        select(SendRequest).where(
            SendRequest.deal_id == deal.id, SendRequest.client_request_id == client_request_id
        )
    )
    if row is None:
        return RequestStatus(
            client_request_id=client_request_id, status="queued", message_id=None, reason=None
        )
    return RequestStatus(
        client_request_id=client_request_id,
        status=row.status if row.status in _STATUSES else "unknown",
        message_id=row.message_id,
        reason=row.reason,
    )


_STATUSES = frozenset({"queued", "sending", "sent", "failed", "unknown"})
