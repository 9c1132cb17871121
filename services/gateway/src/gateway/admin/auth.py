"""Login for the admin UI: one account from settings, a signed session cookie.

Passwords are compared in constant time, and every failed login from the same client
waits longer than the one before (capped), which makes guessing slow without locking
the real admin out for good.
"""

import asyncio
import hmac
import time

from sqladmin.authentication import AuthenticationBackend
from starlette.requests import Request

from common.settings import Settings

FAILED_LOGIN_DELAY_SECONDS = 0.5
FAILED_LOGIN_MAX_DELAY_SECONDS = 8.0
FAILURES_FORGOTTEN_AFTER_SECONDS = 900
_MAX_TRACKED_CLIENTS = 10_000
SESSION_KEY = "chat_sync_admin"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class AdminAuth(AuthenticationBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            secret_key=settings.admin_session_secret.get_secret_value(),
            session_cookie="chat_sync_admin_session",
            max_age=8 * 3600,
            same_site="strict",
            https_only=not settings.debug,
        )
        self._username = settings.admin_username
        self._password = settings.admin_password.get_secret_value()
        self._failures: dict[str, tuple[int, float]] = {}

    def _delay_for(self, client: str) -> float:
        count, last = self._failures.get(client, (0, 0.0))
        now = time.monotonic()
        if now - last > FAILURES_FORGOTTEN_AFTER_SECONDS:
            count = 0
        if len(self._failures) >= _MAX_TRACKED_CLIENTS:
            self._failures.clear()
        self._failures[client] = (count + 1, now)
        return min(FAILED_LOGIN_DELAY_SECONDS * 2.0**count, FAILED_LOGIN_MAX_DELAY_SECONDS)

    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        # Both compared, always: how long it takes says nothing about which one was wrong.
        valid_user = _same(username, self._username)
        valid_password = bool(self._password) and _same(password, self._password)
        client = request.client.host if request.client else "unknown"
        if valid_user and valid_password:
            self._failures.pop(client, None)
            request.session.update({SESSION_KEY: True, "user_id": username})
            return True
        await asyncio.sleep(self._delay_for(client))
        return False

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        return bool(request.session.get(SESSION_KEY))
