"""Per-user windows of recent frames and the connections listening to each user's stream.

Everything here runs on the event loop without awaiting, so attaching a connection (snapshot
of the missed frames + registration for live ones) and delivering a frame can never
interleave: a resuming client gets each frame exactly once, in `seq` order.

Delivery follows `websockets.broadcast`: the frame's bytes go straight into each
connection's transport. The transport's write buffer is the bounded outgoing queue; a
connection whose buffer already holds more than `max_backlog_bytes` is closed with 4008 and
never holds anyone else back.
"""

import asyncio
import bisect
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from common.events import AnyEvent
from realtime import frames
from realtime.metrics import CONNECTIONS, FRAMES_SENT, RESYNCS, SEQ, SLOW_CLOSES

log = structlog.get_logger(__name__)

SLOW_CLIENT: Final = 4008
DEFAULT_MAX_BACKLOG_BYTES: Final = 1 << 20
DEFAULT_MAX_PENDING_FRAMES: Final = 1_000


@dataclass(slots=True, eq=False)
class Client:
    connection: ServerConnection
    user_id: str
    is_admin: bool
    # Live frames that arrived while the missed ones were still being sent; None once live.
    pending: deque[bytes] | None = None


@dataclass(slots=True)
class Window:
    """One stream's retained frames, oldest first, and the duplicate keys they carry."""

    seqs: deque[int] = field(default_factory=deque)
    stamps: deque[float] = field(default_factory=deque)
    frames: deque[bytes] = field(default_factory=deque)
    keys: deque[tuple[str, ...]] = field(default_factory=deque)
    seen: dict[tuple[str, ...], int] = field(default_factory=dict)
    # The newest seq dropped from this window: a resume from before it has lost events.
    floor: int = -1

    def after(self, since: int) -> Iterator[tuple[int, bytes]]:
        start = bisect.bisect_right(self.seqs, since)
        return itertools.islice(zip(self.seqs, self.frames, strict=True), start, None)


class Hub:
    def __init__(
        self,
        *,
        retention_events: int,
        retention_seconds: float,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        max_pending_frames: int = DEFAULT_MAX_PENDING_FRAMES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention_events = retention_events
        self.retention_seconds = retention_seconds
        self.max_backlog_bytes = max_backlog_bytes
        self.max_pending_frames = max_pending_frames
        self.clock = clock
        self.head = -1  # the newest seq read from the journal
        self.origin: int | None = None  # the oldest seq this instance has read
        self.ready = asyncio.Event()  # the journal has been read up to its end once
        self.windows: dict[str, Window] = {}
        self.clients: dict[str, set[Client]] = {}
        self.admins: set[Client] = set()
        self._closing: set[asyncio.Task[None]] = set()

    # --- the journal side ----------------------------------------------------------------

    def advance(self, seq: int) -> None:
        """Note a journal entry that is not a frame (a marker, an unreadable event)."""
        if self.origin is None:
            self.origin = seq
        self.head = max(self.head, seq)
        SEQ.set(self.head)

    def publish(self, seq: int, event: AnyEvent) -> None:
        self.advance(seq)
        routed = frames.route(event)
        if routed is None:
            return
        frame: bytes | None = None
        stamp = event.occurred_at.timestamp()
        for stream in routed.streams:
            window = self.windows.get(stream)
            if window is None:
                window = self.windows[stream] = Window()
            if routed.key in window.seen:
                continue  # e.g. Telegram's echo of a reply already shown from message.sent
            if frame is None:
                frame = frames.encode(seq, routed.body)
            self._remember(window, seq, stamp, frame, routed.key)
            self._deliver(frame, self._listeners(stream))

    def _remember(
        self, window: Window, seq: int, stamp: float, frame: bytes, key: tuple[str, ...]
    ) -> None:
        window.seqs.append(seq)
        window.stamps.append(stamp)
        window.frames.append(frame)
        window.keys.append(key)
        window.seen[key] = seq
        # Keep the newest N, and beyond them whatever is younger than the age limit.
        oldest_kept = self.clock() - self.retention_seconds
        while len(window.seqs) > self.retention_events and window.stamps[0] < oldest_kept:
            dropped = window.seqs.popleft()
            window.stamps.popleft()
            window.frames.popleft()
            old_key = window.keys.popleft()
            if window.seen.get(old_key) == dropped:
                del window.seen[old_key]
            window.floor = dropped

    def _listeners(self, stream: str) -> Iterable[Client]:
        return self.admins if stream == frames.ADMINS else self.clients.get(stream, ())

    def _deliver(self, frame: bytes, clients: Iterable[Client]) -> None:
        sent = 0
        for client in list(clients):
            if client.pending is not None:
                client.pending.append(frame)
                if len(client.pending) > self.max_pending_frames:
                    self.kick(client)
                continue
            connection = client.connection
            if connection.protocol.state is not State.OPEN:
                continue
            transport = connection.transport
            if transport.get_write_buffer_size() > self.max_backlog_bytes:
                self.kick(client)
                continue
            try:
                connection.protocol.send_text(frame)
                connection.send_data()
            except Exception as error:  # a broken transport: its handler sees the close
                log.warning("write failed", error=type(error).__name__)
                continue
            sent += 1
        if sent:
            FRAMES_SENT.inc(sent)

    # --- the connection side -------------------------------------------------------------

    def attach(
        self, connection: ServerConnection, user_id: str, *, is_admin: bool, since: int | None
    ) -> tuple[Client, list[bytes]]:
        """Register a connection; return it with the frames it missed (or one resync frame)."""
        missed: list[bytes] = []
        if since is not None:
            if self._resumable(user_id, is_admin, since):
                missed = list(self._missed(user_id, is_admin, since))
            else:
                RESYNCS.inc()
                missed = [frames.resync(self.head)]
        client = Client(connection, user_id, is_admin, deque() if missed else None)
        self.clients.setdefault(user_id, set()).add(client)
        if is_admin:
            self.admins.add(client)
        CONNECTIONS.inc()
        return client, missed

    def go_live(self, client: Client) -> bytes | None:
        """The next frame queued while catching up, or None once the client is live."""
        if client.pending:
            return client.pending.popleft()
        client.pending = None
        return None

    def detach(self, client: Client) -> None:
        clients = self.clients.get(client.user_id)
        if clients is None or client not in clients:
            return
        clients.discard(client)
        self.admins.discard(client)
        if not clients:
            del self.clients[client.user_id]
        CONNECTIONS.dec()

    def kick(self, client: Client) -> None:
        """Close a client that fell behind; it resumes with `since`."""
        self.detach(client)
        SLOW_CLOSES.inc()
        log.info("slow client closed", user_id=client.user_id)
        task = asyncio.get_running_loop().create_task(
            client.connection.close(SLOW_CLIENT, "too slow: resume with since")
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _streams(self, user_id: str, is_admin: bool) -> list[Window]:
        names = [user_id, frames.ADMINS] if is_admin else [user_id]
        return [self.windows[name] for name in names if name in self.windows]

    def _resumable(self, user_id: str, is_admin: bool, since: int) -> bool:
        if since > self.head or since < -1:
            return False  # from the future, or not a seq at all
        if self.origin is None or since < self.origin - 1:
            return False  # before the oldest entry this instance could read
        return all(since >= window.floor for window in self._streams(user_id, is_admin))

    def _missed(self, user_id: str, is_admin: bool, since: int) -> Iterator[bytes]:
        windows = self._streams(user_id, is_admin)
        for _seq, frame in heapq.merge(*(window.after(since) for window in windows)):
            yield frame
