#!/usr/bin/env python3
"""A dashboard written for a Redis-to-WebSocket bridge, unchanged: it connects to /ws, subscribes
to the trading agents' channels, and prints each update as it comes.

Usage: python3 bridge_dashboard.py [ws://localhost:3000/ws] [updates to read, default: forever]
Needs `pip install -r requirements.txt` (websockets >= 13).
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

CHANNELS = ["agent.updates", "risk.state", "trade.results"]


async def main(url, limit):
    try:
        ws = await connect(url)
    except (OSError, TimeoutError, WebSocketException):
        print("error: cannot reach the daemon; is it running?")
        return 1
    await ws.send(json.dumps({"type": "subscribe", "channels": CHANNELS}))
    # A bridge answers the subscription before anything else.
    answer = json.loads(await ws.recv())
    if answer.get("type") != "subscribed":
        print(f"error: expected subscribed first, got {answer}")
        return 1
    print("subscribed " + ",".join(answer["channels"]), flush=True)
    seen = 0
    try:
        async for message in ws:
            update = json.loads(message)
            if update.get("type") != "update":
                continue
            data = update.get("data") or {}
            print(f"update {update['channel']} {data.get('agent')}", flush=True)
            seen += 1
            if limit is not None and seen >= limit:
                await ws.close(1000)
                break
    except ConnectionClosed:
        pass
    return 0


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:3000/ws"
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    try:
        sys.exit(asyncio.run(main(url, limit)))
    except KeyboardInterrupt:
        sys.exit(130)
