#!/usr/bin/env python3
"""Forward TCP connections from one address to another, until stopped.

    tcp_forward.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

scripts/invoke.sh uses it to let a `sam local invoke` container reach the local DynamoDB, which
listens on 127.0.0.1 only: the forwarder listens on the Docker bridge's gateway address (reachable
from the host and its containers, not from other machines) and relays to 127.0.0.1. Prints
"listening" once the socket is bound.
"""

from __future__ import annotations

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))

    server = await asyncio.start_server(relay, listen_host, listen_port)
    print(f"listening on {listen_host}:{listen_port} -> {target_host}:{target_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
