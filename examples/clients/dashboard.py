#!/usr/bin/env python3
"""The smallest dashboard in Python: the same output as dashboard.mjs.

Usage: python3 dashboard.py [ws://localhost:3000] [messages to read, default: forever] [channel]
                           [--token JWT] [--delta]
The count takes every message: packets and, with a channel, that channel's updates.
A daemon with auth.secret needs a token (`bff token --secret-file F --sub NAME` prints one):
`--token JWT`, or the BFF_TOKEN environment variable. A refused connection is reported with its
HTTP status and the daemon's reason (401: no or a bad token, 403: origin not allowed, 429: too
many connections from this address) and the exit code is 1.
With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
prints each relayed message as `UPDATE <channel> offset=<n>`.
When the connection drops, it reconnects (after 1, 2, 4 ... 30 s) saying where it left off, so
the daemon sends what it missed, and prints `RECONNECTED resumed=true` (false: starting afresh);
its channel too: it subscribes again with the last offset it got, and the `SUBSCRIBED` line
ends with `resumed=[<channel>:true]` when the missed updates follow.
With --delta it asks for fossil deltas (`?delta=fossil`, docs/PROTOCOL.md §13.2): each
TELEMETRY is then the change from the previous packet's data, which it applies (and checks by
the delta's checksum) before printing the same line, ending ` delta=true` (` delta=false` for a
whole one). Compression (permessage-deflate) is negotiated by `websockets` by itself.
Needs `pip install -r requirements.txt` (websockets >= 13).
"""
import asyncio
import json
import os
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.typing import Subprotocol


def js(value):
    """A value as a JavaScript template string prints it: 450.32, 450 (not 450.0), null."""
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def resume_url(url, last):
    """`url` saying where the client left off (`last`: seq and epoch), to get what it missed."""
    if last is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("since", "epoch")]
    query += [("since", last[0]), ("epoch", last[1])]
    return parts._replace(path=parts.path or "/", query=urlencode(query)).geturl()


FOSSIL_DIGITS = {c: i for i, c in enumerate(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~")}


def fossil_checksum(data):
    """The fossil delta checksum: the sum of big-endian 32-bit words, a short tail zero-padded."""
    full = len(data) - len(data) % 4
    total = sum(int.from_bytes(data[i:i + 4], "big") for i in range(0, full, 4))
    total += sum(b << (24 - 8 * j) for j, b in enumerate(data[full:]))
    return total & 0xFFFFFFFF


def fossil_apply(source, delta):
    """`delta` (bytes, the fossil delta format) applied to `source` (bytes); ValueError when it
    does not apply (a wrong source, or a corrupt delta)."""
    pos = 0

    def number():
        nonlocal pos
        n = 0
        while pos < len(delta) and delta[pos] in FOSSIL_DIGITS:
            n = n * 64 + FOSSIL_DIGITS[delta[pos]]
            pos += 1
        return n

    size = number()
    if delta[pos:pos + 1] != b"\n":
        raise ValueError("a delta starts with its size and a newline")
    pos += 1
    out = bytearray()
    while pos < len(delta):
        count = number()
        op, pos = delta[pos:pos + 1], pos + 1
        if op == b"@":
            offset = number()
            if delta[pos:pos + 1] != b"," or offset + count > len(source):
                raise ValueError("a copy outside the previous data")
            pos += 1
            out += source[offset:offset + count]
        elif op == b":":
            out += delta[pos:pos + count]
            pos += count
        elif op == b";":
            if len(out) != size or count != fossil_checksum(out):
                raise ValueError("the delta does not apply to the previous data")
            return bytes(out)
        else:
            raise ValueError(f"unexpected {op!r} in a delta")
    raise ValueError("a delta ends with its checksum")


def raw_data(message):
    """A packet's `data` as its bytes came: after the envelope's first `"data":`, up to its last
    `,"epoch":` (what the next delta applies to)."""
    start = message.index('"data":') + len('"data":')
    return message[start:message.rindex(',"epoch":')].encode()


def delta_url(url):
    """`url` asking for fossil deltas."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "delta"] + [("delta", "fossil")]
    return parts._replace(path=parts.path or "/", query=urlencode(query)).geturl()


def refusal(response, token):
    """Why the daemon refused the handshake, from its HTTP answer."""
    body = response.body.decode("utf-8", "replace").strip()
    why = f"HTTP {response.status_code} {response.reason_phrase}: {body}"
    if response.status_code == 401:
        why += (" (the token was refused: expired, or signed with another secret than the "
                "daemon's?)" if token else
                " (this daemon needs a token: give one with --token or BFF_TOKEN; "
                "`bff token --secret-file F --sub NAME` prints one)")
    elif "Retry-After" in response.headers:
        why += f" (Retry-After: {response.headers['Retry-After']} s)"
    return why


def fail(why):
    print(f"error: {why}", file=sys.stderr, flush=True)
    return 1


async def main(url, limit, channel, token, delta=False):
    # The token goes as a subprotocol, the one way a browser can send it.
    subprotocols = [Subprotocol("token"), Subprotocol(token)] if token else None
    seen = 0
    last = None  # the seq and epoch of the last packet, to resume from
    offsets, offsets_epoch = {}, None  # the last offset of each channel, and their epoch
    connected = False  # at least once: from then on, a lost connection is retried
    base = None  # with --delta: the last packet's data, as its bytes came
    if delta:
        url = delta_url(url)
    attempt = 0
    while True:
        if connected:  # the daemon went away, or is not back yet: come back
            await asyncio.sleep(min(30, 2 ** attempt))
            attempt += 1
        try:
            ws = await connect(resume_url(url, last), subprotocols=subprotocols)
        except InvalidStatus as refused:
            if connected:
                continue
            return fail(refusal(refused.response, token))
        except (OSError, TimeoutError, WebSocketException) as err:
            if connected:
                continue
            return fail(f"cannot reach the daemon ({err}); is it running?")
        reconnected, connected = connected, True
        if channel:
            subscribe = {"type": "SUBSCRIBE", "channels": [channel]}
            if offsets:
                subscribe.update(since=offsets, epoch=offsets_epoch)
            await ws.send(json.dumps(subscribe))
        try:
            async for message in ws:
                packet = json.loads(message)
                if packet.get("type") in ("WELCOME", "TELEMETRY"):
                    if packet["type"] == "WELCOME" and reconnected:
                        attempt = 0
                        print(f"RECONNECTED resumed={json.dumps(packet.get('resumed', False))}",
                              flush=True)
                    # A resume that missed nothing starts with the packet it already has.
                    if (packet["seq"], packet["epoch"]) == last:
                        continue
                    suffix = ""
                    if packet.get("delta") is True:
                        # Only ever the packet right after the one this client has.
                        if last != (packet["seq"] - 1, packet["epoch"]) or base is None:
                            raise ValueError(f"a delta for seq {packet['seq']} after {last}")
                        base = fossil_apply(base, packet["data"].encode())
                        data = json.loads(base)
                    else:
                        base = raw_data(message) if delta else None
                        data = packet["data"]
                    if delta and packet["type"] == "TELEMETRY":
                        suffix = f" delta={json.dumps(packet.get('delta') is True)}"
                    last = packet["seq"], packet["epoch"]
                    stale = [name for name, source in data["sources"].items() if not source["ok"]]
                    print(f"{packet['type']} seq={packet['seq']} status={data['status']} "
                          f"price={js(data['market']['price'])} stale=[{','.join(stale)}]{suffix}",
                          flush=True)
                elif packet.get("type") == "SUBSCRIBED":
                    line = f"SUBSCRIBED channels=[{','.join(packet['channels'])}]"
                    if "resumed" in packet:
                        answers = (f"{c}:{json.dumps(ok)}" for c, ok in packet["resumed"].items())
                        line += f" resumed=[{','.join(answers)}]"
                    print(line, flush=True)
                    for rejected in packet["rejected"]:
                        print(f"REJECTED {rejected['channel']}: {rejected['reason']}", flush=True)
                elif packet.get("type") == "REGIME":
                    mood = packet["data"]
                    print(f"REGIME {mood['previous']}>{mood['regime']} "
                          f"{mood['persona']['headline']}", flush=True)
                elif packet.get("type") == "ALERT":
                    alert = packet["data"]
                    print(f"ALERT {alert['code']} level={alert['level']} "
                          f"active={json.dumps(alert['active'])}", flush=True)
                elif packet.get("type") == "UPDATE":
                    offsets[packet["channel"]] = packet["offset"]
                    offsets_epoch = last[1] if last else None
                    print(f"UPDATE {packet['channel']} offset={packet['offset']}", flush=True)
                seen += 1
                if limit is not None and seen >= limit:
                    await ws.close(1000)
                    print(f"closed code={ws.close_code or 1006}")
                    return 0
        except ConnectionClosed:
            pass


def flag_arg(args, flag):
    """Whether `flag` is in `args`, taken out of them."""
    if flag in args:
        args.remove(flag)
        return True
    return False


def token_arg(args):
    """`--token JWT` (or `--token=JWT`) taken out of `args`; else BFF_TOKEN, else None."""
    for i, arg in enumerate(args):
        if arg == "--token" and i + 1 < len(args):
            del args[i]
            return args.pop(i)
        if arg.startswith("--token="):
            return args.pop(i)[len("--token="):]
    return os.environ.get("BFF_TOKEN") or None


if __name__ == "__main__":
    args = sys.argv[1:]
    token = token_arg(args)
    delta = flag_arg(args, "--delta")
    url = args[0] if len(args) > 0 else "ws://localhost:3000"
    limit = int(args[1]) if len(args) > 1 and args[1] else None
    channel = args[2] if len(args) > 2 else None
    try:
        sys.exit(asyncio.run(main(url, limit, channel, token, delta)))
    except KeyboardInterrupt:
        sys.exit(130)
