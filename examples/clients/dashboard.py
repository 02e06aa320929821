#!/usr/bin/env python3
"""The smallest dashboard in Python: the same output as dashboard.js.

Usage: python3 dashboard.py [ws://localhost:3000] [messages to read, default: forever] [channel]
With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
prints each relayed message as `UPDATE <channel> offset=<n>`.
Needs `pip install -r requirements.txt` (websockets >= 13).
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException


def js(value):
    """A value as a JavaScript template string prints it: 450.32, 450 (not 450.0), null."""
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


async def main(url, limit, channel):
    try:
        ws = await connect(url)
    except (OSError, TimeoutError, WebSocketException):
        print("error: cannot reach the daemon; is it running?")
        return 1
    if channel:
        await ws.send(json.dumps({"type": "SUBSCRIBE", "channels": [channel]}))
    seen = 0
    try:
        async for message in ws:
            packet = json.loads(message)
            if packet.get("type") in ("WELCOME", "TELEMETRY"):
                data = packet["data"]
                stale = [name for name, source in data["sources"].items() if not source["ok"]]
                print(f"{packet['type']} seq={packet['seq']} status={data['status']} "
                      f"price={js(data['market']['price'])} stale=[{','.join(stale)}]", flush=True)
            elif packet.get("type") == "SUBSCRIBED":
                print(f"SUBSCRIBED channels=[{','.join(packet['channels'])}]", flush=True)
                for rejected in packet["rejected"]:
                    print(f"REJECTED {rejected['channel']}: {rejected['reason']}", flush=True)
            elif packet.get("type") == "UPDATE":
                print(f"UPDATE {packet['channel']} offset={packet['offset']}", flush=True)
            seen += 1
            if limit is not None and seen >= limit:
                await ws.close(1000)
                break
    except ConnectionClosed:
        pass
    print(f"closed code={ws.close_code or 1006}")
    return 0


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:3000"
    limit = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
    channel = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        sys.exit(asyncio.run(main(url, limit, channel)))
    except KeyboardInterrupt:
        sys.exit(130)
