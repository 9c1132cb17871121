"""Deterministic chats, messages and customers generated from a seed."""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_FIRST = ["Anna", "Boris", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Igor", "Julia"]
_LAST = ["Petrov", "Smirnova", "Li", "Novak", "Khan", "Weber", "Rossi", "Sato", "Ivanova"]
_PHRASES = [
    "Hello! Is my order ready?",
    "Can I pick it up tomorrow?",
    "Thanks, see you then.",
    "What is the price of delivery?",
    "Yes, it is ready.",
    "We open at 9:00.",
    "Please send the invoice.",
]


@dataclass
class Chat:
    id: str
    customer_id: str
    owner_id: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)  # newest first

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "owner_id": self.owner_id,
            "last_message": self.messages[0],
        }


@dataclass
class Dataset:
    chats: list[Chat]  # newest first by (last_message.created_at, id)
    customers: dict[str, dict[str, Any]]

    def add_message(self, chat_id: str, text: str, when: datetime) -> None:
        """Simulate activity between runs: the chat moves back to the front."""
        chat = next(chat for chat in self.chats if chat.id == chat_id)
        number = len(chat.messages) + 1
        chat.messages.insert(0, _message(f"{chat_id}_m{number:05d}", text, when, "incoming"))
        self.chats.sort(key=_chat_order, reverse=True)


def _chat_order(chat: Chat) -> tuple[str, str]:
    return chat.messages[0]["created_at"], chat.id


def _message(message_id: str, text: str, when: datetime, direction: str) -> dict[str, Any]:
    stamp = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"id": message_id, "text": text, "created_at": stamp, "direction": direction}


def generate(
    *,
    seed: int = 7,
    chats: int = 50,
    max_messages: int = 30,
    owner_id: str | None = "111111111",
    avatar_base_url: str | None = None,
    newest: datetime | None = None,
) -> Dataset:
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data
    newest = newest or datetime(2026, 1, 1, tzinfo=UTC)
    customers: dict[str, dict[str, Any]] = {}
    result: list[Chat] = []
    for index in range(chats):
        customer_id = f"cust_{index:05d}"
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        avatar = f"{avatar_base_url}/avatars/{customer_id}.png" if avatar_base_url else None
        customers[customer_id] = {"id": customer_id, "name": name, "avatar_url": avatar}
        chat = Chat(id=f"chat_{index:05d}", customer_id=customer_id, owner_id=owner_id)
        moment = newest - timedelta(hours=index * 7 + rng.randint(0, 6))
        count = rng.randint(1, max_messages)
        for number in range(count, 0, -1):
            direction = "incoming" if rng.random() < 0.6 else "outgoing"
            text = rng.choice(_PHRASES)
            chat.messages.append(
                _message(f"chat_{index:05d}_m{number:05d}", text, moment, direction)
            )
            moment -= timedelta(minutes=rng.randint(1, 240))
        result.append(chat)
    result.sort(key=_chat_order, reverse=True)
    return Dataset(chats=result, customers=customers)
