"""The raw floors that run as their own processes, so their CPU and memory can be read alone.

`python -m bench.floors http --port P`: a bare uvicorn app answering the webhook POST with the
same 200 JSON body (uvicorn with the same loop and HTTP parser as telegram-ingest).

`python -m bench.floors ws --port P`: a bare `websockets` server, compression off, whose
connections idle until closed. A connection to `/control` may send
`{"frame": "...", "count": N, "interval": S}`: the server then `websockets.broadcast`s that
prebuilt frame N times to every other connection, S seconds apart, and answers `done`.
"""

import argparse
import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.harness import LOOPBACK

Scope = dict[str, Any]


async def _bare_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # read the whole body, as the webhook does
        message = await receive()
        more = message.get("more_body", False)
    payload = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _serve_http(port: int) -> None:
    import uvicorn

    uvicorn.run(_bare_app, host=LOOPBACK, port=port, log_config=None, access_log=False)


async def _serve_ws(port: int) -> None:
    listeners: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        if connection.request.path.startswith("/control"):
            async for message in connection:
                order = json.loads(message)
                frame = str(order["frame"])
                for _ in range(int(order["count"])):
                    broadcast(listeners, frame)
                    await asyncio.sleep(float(order["interval"]))
                await connection.send("done")
            return
        listeners.add(connection)
        try:
            async for _ in connection:
                pass
        finally:
            listeners.discard(connection)

    async def process_request(connection: ServerConnection, request: Any) -> Any:
        if request.path.rstrip("/") in ("/healthz", "/readyz"):
            return connection.respond(200, "ok\n")
        return None

    async with serve(
        handler, LOOPBACK, port, compression=None, process_request=process_request
    ) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.floors")
    parser.add_argument("kind", choices=["http", "ws"])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    if arguments.kind == "http":
        _serve_http(arguments.port)
    else:
        asyncio.run(_serve_ws(arguments.port))


if __name__ == "__main__":
    main()
