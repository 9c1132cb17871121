"""Imported messages as DynamoDB items (the `common.messages` contract) and their puts."""

import asyncio
from typing import Any

from common.dynamo import Item, to_attributes
from common.ids import deal_id_for_external, imported_message_key
from common.messages import isoformat
from sync_worker.batch.client import Chat, Message
from sync_worker.batch.deps import Deps, ImportedCustomer

_BATCH_SIZE = 25
_BATCH_ATTEMPTS = 10


def items_for(chat: Chat, customer: ImportedCustomer, messages: list[Message]) -> list[Item]:
    deal_id = str(deal_id_for_external(chat.id))
    return [item_for(deal_id, chat, customer, message) for message in messages]


def item_for(deal_id: str, chat: Chat, customer: ImportedCustomer, message: Message) -> Item:
    """The message item, with the attributes and formats of `common.messages`."""
    incoming = message.direction == "incoming"
    if incoming:
        sender: dict[str, str] | None = {"id": customer.external_id, "name": customer.name}
    else:
        sender = {"id": chat.owner_id, "name": ""} if chat.owner_id else None
    return {
        "deal_id": deal_id,
        "sk": imported_message_key(message.created_at, message.id),
        "message_id": message.id,
        "chat_id": chat.id,
        "business_connection_id": None,
        "direction": message.direction,
        "sent_by": "customer" if incoming else "owner",
        "sender": sender,
        "date": isoformat(message.created_at),
        "source": "imported",
        "reply_to_message_id": None,
        "media": None,
        "text": message.text,
        "entities": [],
        "caption": None,
        "caption_entities": [],
        "edit_date": None,
        "edit_ts": 0,
    }


async def put_items(deps: Deps, items: list[Item]) -> None:
    chunks = [items[start : start + _BATCH_SIZE] for start in range(0, len(items), _BATCH_SIZE)]
    await asyncio.gather(*(_put_chunk(deps, chunk) for chunk in chunks))


async def _put_chunk(deps: Deps, items: list[Item]) -> None:
    requests: list[Any] = [{"PutRequest": {"Item": to_attributes(item)}} for item in items]
    for attempt in range(_BATCH_ATTEMPTS):
        response = await deps.dynamo.batch_write_item(RequestItems={deps.table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(deps.table, []))
        if not requests:
            return
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    raise RuntimeError(f"DynamoDB left {len(requests)} items unprocessed after retries")
