"""Canned-answer HTTP servers below BentoML, for bench/http_floor.py; not part of the package.

Both read the whole request and answer every `POST /score` with the same fixed JSON body
(the size of one scored account with five reasons), so their latency is the cost of an
HTTP round trip on this machine with no model, no validation, no auth and no audit:

- `python floor_servers.py raw PORT`: a bare asyncio server (HTTP/1.1 keep-alive, parses
  only Content-Length): the cheapest Python HTTP server, the floor under every framework;
- `python -m uvicorn floor_servers:app --port PORT`: uvicorn + Starlette, the ASGI stack
  BentoML itself runs on, with one route that reads and parses the JSON body.
"""

from __future__ import annotations

import asyncio
import json
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_REASON = {
    "feature": "hosting_vpn_share_30d",
    "family": "network",
    "value": 0.81,
    "contribution": 0.5,
    "sentence": "81% of API traffic in the last 30 days came from hosting or VPN networks",
}
BODY = json.dumps(
    {
        "request_id": "0" * 32,
        "model": {"name": "null", "version": "0", "sha256": "0" * 64},
        "results": [
            {
                "account_id": "acct-000000",
                "score": 0.5,
                "band": "review",
                "raw_score": 0.0,
                "reasons": [_REASON] * 5,
            }
        ],
    }
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)
    + BODY
)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        writer.close()


async def _serve_raw(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def _score(request: Request) -> Response:
    json.loads(await request.body())
    return Response(BODY, media_type="application/json")


async def _ready(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[Route("/score", _score, methods=["POST"]), Route("/readyz", _ready, methods=["GET"])]
)

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "raw" or not sys.argv[2].isdigit():
        raise SystemExit("usage: python floor_servers.py raw PORT")
    asyncio.run(_serve_raw(int(sys.argv[2])))
