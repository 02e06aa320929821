// The client library (../bff.js) against the real daemon (../support/daemon.js): packets as plain
// objects in each encoding, equal to a plain client's seq for seq; a dropped connection resumed
// with no packet missing or twice; a command answered by id; and, with a stand-in WebSocket, the
// revoked token that stops the retries, channels subscribed and left across a reconnect; and
// Node's `ws` with permessage-deflate on, as browsers have it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import NodeWebSocket from 'ws';
import { connect } from '../bff.js';
import { bffBinary, configFile, PATIENCE_MS, startDaemon, startEngine, until } from '../support/daemon.js';

/** A daemon polling a moving engine every 150 ms, commands allowed from loopback; `t.after` ends it. */
async function daemonFor(t, actions = {}, extra = []) {
  const bin = bffBinary();
  if (!bin) {
    t.skip('no bff binary: build it (cargo build) or set BFF_BIN');
    return null;
  }
  const engine = await startEngine({ moving: true, actions });
  const config = configFile(t, engine, ['[commands]', 'allow_without_auth = true', ...extra]);
  const daemon = await startDaemon(bin, config, '127.0.0.1:0');
  t.after(() => {
    daemon.child.kill('SIGKILL');
    engine.close();
  });
  return `ws://${daemon.addr}/ws/stream`;
}

/** `PUBLISH channel message` to the Redis at `url`, in RESP by hand: no Redis client needed. */
async function publish(url, channel, message) {
  const { hostname, port } = new URL(url);
  const parts = ['PUBLISH', channel, message].map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`);
  const socket = tcpConnect(Number(port), hostname);
  socket.end(`*3\r\n${parts.join('')}`);
  let answer = '';
  for await (const chunk of socket) answer += chunk;
  assert.match(answer, /^:\d+\r\n$/, `Redis answered PUBLISH with ${JSON.stringify(answer)}`);
}

/**
 * A WebSocket class that keeps every socket made, every frame received as it came, and every
 * message sent with the index of its socket.
 */
function spyWebSocket() {
  const sockets = [];
  const frames = [];
  const sent = [];
  class Spy extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
      this.addEventListener('message', (event) => frames.push(event.data));
    }
    send(data) {
      sent.push({ socket: sockets.indexOf(this), message: JSON.parse(data) });
      super.send(data);
    }
  }
  return { Spy, sockets, frames, sent };
}

/**
 * A client on `url` that records its packets (seq → data), statuses and messages; made by
 * `options.connect` when given (another copy of the library), else by ../bff.js's.
 */
function recorded(url, options = {}) {
  const spy = spyWebSocket();
  const seen = { packets: [], data: new Map(), statuses: [], types: [], spy };
  const { connect: open = connect, ...rest } = options;
  seen.client = open(url, {
    WebSocket: spy.Spy,
    minDelayMs: 200,
    maxDelayMs: 1000,
    onStatus: (status) => seen.statuses.push(status),
    ...rest,
  });
  seen.client.on('*', (message) => seen.types.push(message.type));
  for (const type of ['WELCOME', 'TELEMETRY']) {
    seen.client.on(type, (packet) => {
      seen.packets.push(packet);
      seen.data.set(packet.seq, packet.data);
    });
  }
  return seen;
}

/** The packets' seqs follow one another, each once. */
function assertNoGap(packets) {
  const seqs = packets.map((p) => p.seq);
  for (let i = 1; i < seqs.length; i++) {
    assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i]} after ${seqs[i - 1]}: ${seqs.join(',')}`);
  }
}

test('plain, delta and MessagePack clients get the same data for the same seq, as plain objects', { timeout: 4 * PATIENCE_MS }, async (t) => {
  const url = await daemonFor(t);
  if (!url) return;
  const plain = recorded(url);
  const delta = recorded(url, { delta: true });
  const msgpack = recorded(url, { format: 'msgpack' });
  const all = [plain, delta, msgpack];
  const deltaFrames = () => delta.spy.frames.filter((f) => f.includes('"delta":true')).length;
  // Eight packets past the latest WELCOME, the deltas among them applied.
  const common = () => Math.max(...all.map((c) => c.packets[0]?.seq ?? Infinity)) + 8;
  await until(
    () => all.every((c) => c.data.has(common())) && deltaFrames() >= 5,
    'eight packets in each encoding, five of them deltas',
    () => all.map((c) => c.packets.length),
  );
  for (const c of all) {
    c.client.close();
    assert.equal(c.packets[0].type, 'WELCOME');
    assert.ok(c.packets.slice(1).every((p) => p.type === 'TELEMETRY'));
    assertNoGap(c.packets);
    assert.deepEqual(c.statuses.map((s) => s.state), ['connecting', 'live', 'closed']);
    assert.ok(c.packets.every((p) => !('delta' in p)), 'no `delta` key is left in a packet');
  }
  assert.ok(msgpack.spy.frames.slice(0, 3).every((f) => f instanceof ArrayBuffer), 'MessagePack comes binary');
  assert.ok(plain.spy.frames.every((f) => typeof f === 'string' && !f.includes('"delta"')));
  const start = Math.max(...all.map((c) => c.packets[0].seq));
  for (let seq = start; seq <= common(); seq++) {
    const data = plain.data.get(seq);
    assert.ok(data && typeof data === 'object' && !Array.isArray(data), `seq ${seq}: an object`);
    if (seq > start) assert.notDeepEqual(data, plain.data.get(seq - 1), 'each packet differs from the last');
    assert.deepEqual(delta.data.get(seq), data, `the delta client's data of seq ${seq}`);
    assert.deepEqual(msgpack.data.get(seq), data, `the MessagePack client's data of seq ${seq}`);
  }
});

test('bff.js alone, without its npm packages: a plain client streams, a delta or MessagePack one says what is missing', { timeout: 4 * PATIENCE_MS }, async (t) => {
  const url = await daemonFor(t);
  if (!url) return;
  // A directory with bff.js and nothing else: no node_modules here or above it.
  const dir = mkdtempSync(join(tmpdir(), 'bff-alone-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(new URL('../bff.js', import.meta.url), join(dir, 'bff.js'));
  writeFileSync(join(dir, 'package.json'), '{"type": "module"}');
  const alone = await import(pathToFileURL(join(dir, 'bff.js')).href);

  const plain = recorded(url, { connect: alone.connect });
  await until(() => plain.packets.length >= 2, 'a WELCOME and a TELEMETRY', () => plain.packets.length);
  plain.client.close();
  assert.deepEqual(plain.packets.slice(0, 2).map((p) => p.type), ['WELCOME', 'TELEMETRY']);
  assert.deepEqual(plain.statuses.map((s) => s.state), ['connecting', 'live', 'closed']);

  for (const [options, missing] of [[{ delta: true }, 'fossil-delta'], [{ format: 'msgpack' }, '@msgpack/msgpack']]) {
    const errors = [];
    const c = recorded(url, { connect: alone.connect, onError: (e) => errors.push(e.message), ...options });
    await until(() => c.client.status.state === 'closed', `the ${missing} client to give up`, () => c.statuses);
    const said = `bff: cannot load ${missing} (npm install ${missing}, or map it in an import map)`;
    assert.equal(c.spy.sockets.length, 0, 'no connection without its decoder');
    assert.deepEqual(c.statuses.map((s) => [s.state, s.code]), [['connecting', undefined], ['closed', 1006]]);
    assert.ok(c.statuses[1].reason.startsWith(said), c.statuses[1].reason);
    assert.equal(errors.length, 1);
    assert.ok(errors[0].startsWith(said), errors[0]);
  }
});

test('a dropped connection comes back with since/epoch: resumed, deltas again, no seq missing or twice', { timeout: 4 * PATIENCE_MS }, async (t) => {
  const url = await daemonFor(t);
  if (!url) return;
  const c = recorded(url, { delta: true });
  await until(() => c.packets.length >= 4, 'four packets', () => c.packets.length);
  const dropped = c.packets.at(-1);
  c.spy.sockets[0].close(3000, 'test drop');
  await until(() => c.spy.sockets.length === 2 && c.packets.length >= 12, 'the reconnect and eight more', () => c.packets.length);
  c.client.close();

  assert.deepEqual(c.statuses.map((s) => s.state), ['connecting', 'live', 'reconnecting', 'connecting', 'live', 'closed']);
  assert.equal(c.statuses[2].code, 3000);
  const query = new URL(c.spy.sockets[1].url).searchParams;
  const welcomes = c.packets.filter((p) => p.type === 'WELCOME');
  assert.equal(welcomes.length, 2);
  assert.ok(Number(query.get('since')) >= dropped.seq, `since=${query.get('since')}`);
  assert.equal(query.get('epoch'), dropped.epoch);
  assert.equal(query.get('delta'), 'fossil');
  assert.equal(welcomes[1].resumed, true);
  // A WELCOME that missed nothing repeats the last packet: shown once.
  const shown = c.packets.filter((p, i) => i === 0 || p.seq !== c.packets[i - 1].seq);
  assertNoGap(shown);
  const after = c.spy.frames.slice(c.spy.frames.findLastIndex((f) => f.includes('"WELCOME"')));
  assert.ok(after.some((f) => f.includes('"delta":true')), 'deltas again after the resume');
});

test('command() resolves with the COMMAND_RESULT of its id, and rejects when the client closes first', { timeout: 4 * PATIENCE_MS }, async (t) => {
  let release;
  const url = await daemonFor(t, {
    rebalance: async () => ({ success: true, message: 'Rebalance Started' }),
    'export-logs': () => new Promise((resolve) => (release = resolve)),
  });
  if (!url) return;
  const c = recorded(url);
  await until(() => c.packets.length >= 1, 'the WELCOME', () => c.packets.length);
  const result = await c.client.command('rebalance');
  const sent = c.spy.sent.map((s) => s.message);
  assert.deepEqual(result, {
    type: 'COMMAND_RESULT',
    id: sent[0].id,
    action: 'rebalance',
    ok: true,
    status: 200,
    message: 'Rebalance Started',
    error: null,
  });
  assert.equal(sent[0].type, 'COMMAND');

  const waiting = c.client.command('export-logs');
  await until(() => release, 'the engine asked to export', () => c.spy.sent);
  c.client.close();
  await assert.rejects(waiting, /connection closed \(1000 closed by the client\) before the result of export-logs/);
  release({ success: true, message: 'late' });
  await assert.rejects(c.client.command('halt'), /not connected \(closed\): halt not sent/);
});

test('a revoked token (4401) stops the retries and says why', () => {
  const sockets = [];
  class Fake {
    constructor(url, protocols) {
      Object.assign(this, { url, protocols });
      sockets.push(this);
    }
  }
  const statuses = [];
  const client = connect('ws://bff.test/ws/stream', { WebSocket: Fake, token: 'T0K', onStatus: (s) => statuses.push(s) });
  assert.deepEqual(sockets[0].protocols, ['token', 'T0K']);
  sockets[0].onopen();
  sockets[0].onclose({ code: 4401, reason: 'token revoked' });
  assert.deepEqual(statuses.at(-1), { state: 'closed', code: 4401, reason: 'token revoked' });
  assert.equal(client.status.state, 'closed');
  assert.equal(sockets.length, 1, 'no reconnect');
});

test('a connection that fails before opening is retried after a jittered wait, with an error alone as Node 20 gives it, unless closed from onStatus', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const sockets = [];
  class Fake {
    constructor(url) {
      Object.assign(this, { url, readyState: 0 });
      sockets.push(this);
    }
  }
  const statuses = [];
  const client = connect('ws://bff.test/ws/stream', { WebSocket: Fake, minDelayMs: 1000, random: () => 0.5, onStatus: (s) => statuses.push(s) });
  sockets[0].onerror({});
  assert.deepEqual(statuses.at(-1), { state: 'reconnecting', code: 1006, reason: 'connection failed', attempt: 1, delayMs: 750 });
  t.mock.timers.tick(749);
  assert.equal(sockets.length, 1);
  t.mock.timers.tick(1);
  assert.equal(sockets.length, 2);
  assert.deepEqual(statuses.at(-1), { state: 'connecting', attempt: 1 });
  sockets[1].onerror({});
  assert.equal(statuses.at(-1).delayMs, 1500, 'the ceiling doubles: 1000, then 2000');
  client.close();
  t.mock.timers.tick(5000);
  assert.equal(sockets.length, 2, 'closed: no more attempts');

  // Closed by its own status listener, told of the first failure: never tried again.
  const once = connect('ws://bff.test/ws/stream', {
    WebSocket: Fake,
    onStatus: (s) => s.state === 'reconnecting' && once.close(),
  });
  sockets[2].onerror({});
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 3, 'closed from onStatus: no more attempts');
  assert.equal(once.status.state, 'closed');
});

test('subscribe and unsubscribe, now and after a reconnect: asked again when held, a refused channel not asked again', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const sockets = [];
  class Fake {
    constructor(url) {
      Object.assign(this, { url, readyState: 0, sent: [] });
      sockets.push(this);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close() {}
  }
  const client = connect('ws://bff.test/ws/stream', { WebSocket: Fake, random: () => 1 });
  const receive = (socket, message) => socket.onmessage({ data: JSON.stringify(message) });
  client.subscribe('a'); // before the connection opens: asked when it does
  const [first] = sockets;
  first.readyState = 1;
  first.onopen();
  receive(first, { type: 'WELCOME', seq: 5, epoch: 'e1', data: {} });
  for (const channel of ['secret', 'a', 'b']) client.subscribe(channel);
  receive(first, { type: 'SUBSCRIBED', channels: ['a'], rejected: [] });
  receive(first, { type: 'SUBSCRIBED', channels: [], rejected: [{ channel: 'secret', reason: 'not relayed: no entry of redis.relay matches it' }] });
  receive(first, { type: 'SUBSCRIBED', channels: [], rejected: [{ channel: 'a', reason: 'already subscribed' }] });
  receive(first, { type: 'SUBSCRIBED', channels: ['b'], rejected: [] });
  receive(first, { type: 'UPDATE', channel: 'a', offset: 3, data: {} });
  receive(first, { type: 'UPDATE', channel: 'b', offset: 7, data: {} });
  client.unsubscribe('b');
  assert.deepEqual(first.sent, [
    { type: 'SUBSCRIBE', channels: ['a'] },
    { type: 'SUBSCRIBE', channels: ['secret'] },
    { type: 'SUBSCRIBE', channels: ['a'] },
    { type: 'SUBSCRIBE', channels: ['b'] },
    { type: 'UNSUBSCRIBE', channels: ['b'] },
  ]);

  first.readyState = 3;
  first.onclose({ code: 1006, reason: '' });
  t.mock.timers.tick(1000);
  assert.equal(sockets.length, 2);
  sockets[1].readyState = 1;
  sockets[1].onopen();
  // Held channels only, each from its last offset.
  assert.deepEqual(sockets[1].sent, [{ type: 'SUBSCRIBE', channels: ['a'], since: { a: 3 }, epoch: 'e1' }]);
  client.close();
});

test('a relay channel resumes with its offsets after a drop: every UPDATE once, in order', { timeout: 4 * PATIENCE_MS }, async (t) => {
  const redis = process.env.BFF_REDIS_URL;
  if (!redis) {
    t.skip('no Redis: set BFF_REDIS_URL (cargo test --test suite cli:: starts a redis-server)');
    return;
  }
  const url = await daemonFor(t, {}, ['[redis]', `url = "${redis}"`, 'relay = ["trade.results"]']);
  if (!url) return;
  const c = recorded(url, { format: 'msgpack', channels: ['trade.results'] });
  const updates = [];
  const subscribed = [];
  c.client.on('UPDATE', (u) => updates.push(u));
  c.client.on('SUBSCRIBED', (s) => subscribed.push(s));
  await until(() => subscribed.length === 1, 'the SUBSCRIBED', () => c.types);
  for (const n of [1, 2, 3]) await publish(redis, 'trade.results', JSON.stringify({ n }));
  await until(() => updates.length === 3, 'three updates', () => updates);
  c.spy.sockets[0].close(3000, 'test drop');
  for (const n of [4, 5]) await publish(redis, 'trade.results', JSON.stringify({ n }));
  await until(() => subscribed.length === 2, 'the SUBSCRIBED after the reconnect', () => c.types);
  await publish(redis, 'trade.results', JSON.stringify({ n: 6 }));
  await until(() => updates.length >= 6, 'six updates', () => updates);
  c.client.close();

  assert.deepEqual(updates.map((u) => [u.channel, u.offset, u.data]), [1, 2, 3, 4, 5, 6].map((n) => ['trade.results', n, { n }]));
  assert.deepEqual(c.spy.sent[0], { socket: 0, message: { type: 'SUBSCRIBE', channels: ['trade.results'] } });
  assert.deepEqual(c.spy.sent[1].socket, 1);
  assert.deepEqual(c.spy.sent[1].message, {
    type: 'SUBSCRIBE',
    channels: ['trade.results'],
    since: { 'trade.results': 3 },
    epoch: c.packets.find((p) => p.type === 'WELCOME').epoch,
  });
  assert.deepEqual(subscribed[1].resumed, { 'trade.results': true });
});

test('Node ws with permessage-deflate: negotiated, packets that parse, a compressed PING answered', { timeout: 4 * PATIENCE_MS }, async (t) => {
  const url = await daemonFor(t);
  if (!url) return;
  // threshold 0: ws compresses every message it sends, the PING below included.
  const ws = new NodeWebSocket(url, { perMessageDeflate: { threshold: 0 } });
  t.after(() => ws.terminate());
  const answer = new Promise((resolve) => ws.once('upgrade', resolve));
  const messages = [];
  ws.on('message', (data, isBinary) => messages.push({ text: data.toString(), isBinary }));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const response = await answer;
  assert.equal(ws.extensions, 'permessage-deflate', 'ws negotiated permessage-deflate');
  assert.match(response.headers['sec-websocket-extensions'], /^permessage-deflate; client_no_context_takeover$/);

  await until(() => messages.length >= 3, 'a WELCOME and two TELEMETRY', () => messages.length);
  const packets = messages.slice(0, 3).map((m) => {
    assert.equal(m.isBinary, false);
    return JSON.parse(m.text);
  });
  assert.deepEqual(packets.map((p) => p.type), ['WELCOME', 'TELEMETRY', 'TELEMETRY']);
  assert.equal(packets[2].seq, packets[1].seq + 1);
  assert.ok(packets.every((p) => p.data && typeof p.data.market === 'object'), 'each packet carries its data');
  // Came compressed: fewer bytes read, the 101 and frame headers included, than the text they carried
  // (uncompressed, it could not be fewer).
  const text = messages.reduce((sum, m) => sum + Buffer.byteLength(m.text), 0);
  assert.ok(response.socket.bytesRead < text, `packets came compressed: ${response.socket.bytesRead} bytes read for ${text}`);

  // A PING padded well past what compression leaves of it: fewer bytes leave than it has.
  const ping = JSON.stringify({ type: 'PING', pad: 'x'.repeat(2000) });
  const socket = response.socket;
  const before = socket.bytesWritten;
  await new Promise((resolve, reject) => ws.send(ping, (error) => (error ? reject(error) : resolve())));
  const written = socket.bytesWritten - before;
  assert.ok(written < ping.length / 4, `the PING went compressed: ${written} bytes for ${ping.length}`);
  await until(() => messages.some((m) => m.text === '{"type":"PONG"}'), 'the PONG', () => messages.at(-1)?.text);
  assert.equal(ws.readyState, NodeWebSocket.OPEN, 'the connection stays open');
});
