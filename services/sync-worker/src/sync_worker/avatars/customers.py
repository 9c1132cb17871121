"""Customer avatars: Telegram profile photos and external `avatar_url`s, copied to S3.

A customer is checked when it never was or its last check is older than
`AVATAR_REFRESH_HOURS`; the check is claimed in PostgreSQL (`avatar_checked_at`), so of several
workers one does it, and "no photo" or a refused URL is remembered until the next refresh.
A photo whose `file_unique_id` some customer already has in S3 is not uploaded again: the key
is reused (decided in PostgreSQL). No transaction is open while Telegram or S3 is called.
"""

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from common.db import transaction
from common.events import CustomerImported, CustomerUpdated, utcnow
from common.ids import customer_id_for_telegram
from common.models import Customer
from sync_worker.avatars.fetch import IMAGE_TYPES, AvatarRefused, fetch_image
from sync_worker.avatars.resources import Avatars
from sync_worker.outbound.botapi import FileTooLarge, TelegramRefused

Download = Callable[[], Awaitable[tuple[bytes, str]]]


async def refresh_telegram(
    avatars: Avatars, user_id: str, owner_user_ids: list[str], *, retry: bool = False
) -> None:
    """`retry`: the delivery was tried before (`common.bus.tried_before`)."""
    customer_id = customer_id_for_telegram(user_id)
    claim = await _claim(avatars, customer_id, create_for=user_id, retry=retry)
    if claim is None:
        return
    try:
        photos = await avatars.bot.call(
            "getUserProfilePhotos", {"user_id": int(user_id), "limit": 1}, pace=avatars.pace
        )
        sizes: list[dict[str, Any]] = (photos.get("photos") or [[]])[0]
        if not sizes:
            await _record(avatars, customer_id, claim, owner_user_ids, key=None, unique_id=None)
            return
        largest = max(
            sizes, key=lambda size: (size.get("width", 0) * size.get("height", 0), size["file_id"])
        )

        async def download() -> tuple[bytes, str]:
            found = await avatars.bot.call(
                "getFile", {"file_id": largest["file_id"]}, pace=avatars.pace
            )
            body, content_type = await avatars.bot.download(
                found["file_path"], max_bytes=avatars.max_avatar_bytes
            )
            return body, _image_type(content_type)

        unique_id = str(largest["file_unique_id"])
        key = f"avatars/{customer_id}/{unique_id}.jpg"
        await _store(avatars, customer_id, claim, owner_user_ids, unique_id, key, download)
    except (TelegramRefused, FileTooLarge) as error:
        await _record_error(avatars, customer_id, str(error))
    except Exception:
        await _release(avatars, customer_id, claim)
        raise


async def refresh_external(
    avatars: Avatars, event: CustomerImported, *, retry: bool = False
) -> None:
    claim = await _claim(avatars, event.customer_id, retry=retry)
    if claim is None:
        return
    owners = [event.owner_user_id] if event.owner_user_id else []
    url = event.avatar_url or claim.get("avatar_url")
    if not url:
        await _record(avatars, event.customer_id, claim, owners, key=None, unique_id=None)
        return
    try:
        body, content_type = await fetch_image(
            avatars.http,
            url,
            allowlist=avatars.allowlist,
            max_bytes=avatars.max_avatar_bytes,
            timeout=avatars.url_timeout,
        )
    except AvatarRefused as error:
        await _record_error(avatars, event.customer_id, str(error))
        return
    except httpx.HTTPError as error:
        await _record_error(avatars, event.customer_id, f"download failed: {type(error).__name__}")
        return
    digest = hashlib.sha256(body).hexdigest()[:40]
    key = f"avatars/{event.customer_id}/{digest}{IMAGE_TYPES[content_type]}"

    async def already_downloaded() -> tuple[bytes, str]:
        return body, content_type

    await _store(
        avatars, event.customer_id, claim, owners, f"sha256:{digest}", key, already_downloaded
    )


async def _store(
    avatars: Avatars,
    customer_id: uuid.UUID,
    claim: dict[str, Any],
    owners: list[str],
    unique_id: str,
    key: str,
    download: Download,
) -> None:
    if claim["avatar_file_unique_id"] == unique_id and claim["avatar_key"]:
        key = claim["avatar_key"]
    else:
        async with avatars.sessions() as session:
            stored: str | None = await session.scalar(
                select(Customer.avatar_key)
                .where(
                    Customer.avatar_file_unique_id == unique_id, Customer.avatar_key.is_not(None)
                )
                .limit(1)
            )
        if stored is not None:
            key = stored
        else:
            body, content_type = await download()
            await avatars.s3.put_object(
                Bucket=avatars.bucket, Key=key, Body=body, ContentType=content_type
            )
    await _record(avatars, customer_id, claim, owners, key=key, unique_id=unique_id)


async def _claim(
    avatars: Avatars, customer_id: uuid.UUID, *, create_for: str | None = None, retry: bool
) -> dict[str, Any] | None:
    """Take the check if it is due: the avatar fields as they were, or None."""
    # A retry asks PostgreSQL: the claim another worker held when this one last looked may
    # have been released by the very failure that is being retried.
    if not retry and avatars.settled.fresh(customer_id):
        return None
    async with transaction(avatars.sessions) as session:
        # Most events find the check fresh: a plain read answers them without a lock.
        checked = (
            await session.execute(
                select(Customer.avatar_checked_at).where(Customer.id == customer_id)
            )
        ).one_or_none()
        if checked is not None and _fresh(checked.avatar_checked_at, avatars):
            avatars.settled.read(customer_id, checked.avatar_checked_at)
            return None
        if checked is None and create_for is not None:
            # The live writer may not have created the customer yet; it fills in the names.
            await session.execute(
                insert(Customer)
                .values(id=customer_id, source="telegram", external_id=create_for, name="")
                .on_conflict_do_nothing()
            )
        customer = await session.get(Customer, customer_id, with_for_update=True)
        if customer is None or _fresh(customer.avatar_checked_at, avatars):
            return None
        claim = {
            "avatar_checked_at": customer.avatar_checked_at,
            "avatar_key": customer.avatar_key,
            "avatar_file_unique_id": customer.avatar_file_unique_id,
            "avatar_url": customer.avatar_url,
        }
        customer.avatar_checked_at = utcnow()
        return claim


async def _release(avatars: Avatars, customer_id: uuid.UUID, claim: dict[str, Any]) -> None:
    """A transient failure: the check is due again, so a redelivery can do it."""
    checked: datetime | None = claim["avatar_checked_at"]
    avatars.settled.forget(customer_id)
    async with transaction(avatars.sessions) as session:
        await session.execute(
            update(Customer).where(Customer.id == customer_id).values(avatar_checked_at=checked)
        )


async def _record(
    avatars: Avatars,
    customer_id: uuid.UUID,
    claim: dict[str, Any],
    owners: list[str],
    *,
    key: str | None,
    unique_id: str | None,
) -> None:
    async with transaction(avatars.sessions) as session:
        row = (
            await session.execute(
                update(Customer)
                .where(Customer.id == customer_id)
                .values(
                    avatar_key=key,
                    avatar_file_unique_id=unique_id,
                    avatar_checked_at=func.now(),
                    avatar_error=None,
                    updated_at=func.now(),
                )
                .returning(Customer.external_id, Customer.name, Customer.username)
            )
        ).one_or_none()
    avatars.settled.finished(customer_id)
    if key != claim["avatar_key"]:
        await avatars.publish(
            CustomerUpdated(
                customer_id=customer_id,
                avatar_key=key,
                owner_user_ids=owners,
                external_id=row.external_id if row else None,
                name=row.name if row else None,
                username=row.username if row else None,
            )
        )


async def _record_error(avatars: Avatars, customer_id: uuid.UUID, reason: str) -> None:
    async with transaction(avatars.sessions) as session:
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id)
            .values(avatar_error=reason[:1000], avatar_checked_at=func.now())
        )
    avatars.settled.finished(customer_id)


def _fresh(checked_at: datetime | None, avatars: Avatars) -> bool:
    return checked_at is not None and checked_at > utcnow() - avatars.refresh


def _image_type(content_type: str | None) -> str:
    """Telegram's file server says octet-stream; profile photos are JPEG."""
    value = (content_type or "").split(";")[0].strip().lower()
    return value if value in IMAGE_TYPES else "image/jpeg"
