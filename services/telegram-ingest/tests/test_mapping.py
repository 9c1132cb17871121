from typing import Any

import pytest
from aiogram import types as tg
from ingest_fakes import load_sample

from telegram_ingest import mapping


def _message(**content: Any) -> tg.Message:
    base = load_sample("business_message")["business_message"]
    base.pop("text")
    base.pop("entities")
    return tg.Message.model_validate(base | content)


FILE = {"file_id": "F", "file_unique_id": "U", "file_size": 10}
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"document": FILE | {"file_name": "a.pdf", "mime_type": "application/pdf"}},
        {"kind": "document", "file_name": "a.pdf", "mime_type": "application/pdf"},
    ),
    ({"voice": FILE | {"duration": 3, "mime_type": "audio/ogg"}}, {"kind": "voice", "duration": 3}),
    (
        {"video": FILE | {"width": 640, "height": 480, "duration": 9, "file_name": "v.mp4"}},
        {"kind": "video", "width": 640, "height": 480, "duration": 9, "file_name": "v.mp4"},
    ),
    (
        {"video_note": FILE | {"length": 240, "duration": 5}},
        {"kind": "video_note", "width": 240, "height": 240, "duration": 5},
    ),
    (
        {"audio": FILE | {"duration": 200, "file_name": "song.mp3", "mime_type": "audio/mpeg"}},
        {"kind": "audio", "file_name": "song.mp3", "duration": 200},
    ),
    (
        {
            "animation": FILE
            | {"width": 320, "height": 240, "duration": 2, "mime_type": "video/mp4"},
            "document": FILE | {"mime_type": "video/mp4"},
        },
        {"kind": "animation", "width": 320, "mime_type": "video/mp4"},
    ),
    (
        {
            "sticker": FILE
            | {
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": True,
            }
        },
        {"kind": "sticker", "width": 512, "mime_type": "video/webm"},
    ),
]


@pytest.mark.parametrize(("content", "expected"), CASES, ids=[next(iter(c)) for c, _ in CASES])
def test_media_is_normalised_to_one_descriptor(
    content: dict[str, Any], expected: dict[str, Any]
) -> None:
    media = mapping.media(_message(**content))

    assert media is not None
    assert media.file_id == "F"
    assert media.file_unique_id == "U"
    assert media.file_size == 10
    assert media.model_dump(include=set(expected)) == expected


def test_largest_photo_wins_whatever_the_order() -> None:
    sizes = [
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960},
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 68, "file_size": 9},
    ]

    media = mapping.media(_message(photo=sizes))

    assert media is not None
    assert (media.file_id, media.width, media.file_size) == ("big", 1280, None)


def test_text_message_has_no_media() -> None:
    assert mapping.media(_message(text="hi")) is None


def test_connection_before_rights_object_keeps_can_reply() -> None:
    raw = load_sample("business_connection_disabled")["business_connection"] | {"can_reply": True}

    connection = mapping.connection(tg.BusinessConnection.model_validate(raw))

    assert connection.rights == {"can_reply": True}
