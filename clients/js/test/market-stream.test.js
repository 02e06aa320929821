// MarketStream alone, with a stand-in WebSocket: what each message does to the state, the
// backoff, and a revoked token. Against a real daemon: use-market-stream.test.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarketStream } from '../market-stream.js';

/** A WebSocket the test drives: every one made is in `sockets`. */
function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      Object.assign(this, { url, protocols, closed: null });
      sockets.push(this);
    }
    close(code) {
      this.closed = code;
    }
    // What the server does:
    accept() {
      this.onopen?.({});
    }
    say(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
    drop(code = 1006, reason = '') {
      this.onclose?.({ code, reason });
    }
  }
  return { FakeWebSocket, sockets };
}

const crash = {
  type: 'market_regime',
  regime: 'crash',
  label: 'Crash/Panic',
  persona: { name: 'Big Pickle', headline: 'SELL EVERYTHING' },
  since: '2025-12-21T12:00:04.000Z',
};
const alert = (code, active) => ({
  type: 'alert',
  level: 'critical',
  code,
  message: `${code} message`,
  timestamp: '2025-12-21T12:00:07.000Z',
  active,
});

test('the mood and the active alerts follow the messages, and the token goes as a subprotocol', () => {
  const { FakeWebSocket, sockets } = fakeWebSocket();
  const stream = new MarketStream('ws://bff.test/ws/market-stream', { WebSocket: FakeWebSocket, token: 'T0K' });
  const seen = [];
  stream.subscribe((state) => seen.push(state));
  assert.deepEqual(sockets[0].protocols, ['token', 'T0K']);
  assert.equal(stream.getSnapshot().connected, false);
  sockets[0].accept();
  assert.equal(stream.getSnapshot().connected, true);
  const before = stream.getSnapshot();
  assert.equal(stream.getSnapshot(), before, 'the same object until something changes');

  sockets[0].say(crash);
  sockets[0].say(alert('MARKET_CRASH', true));
  sockets[0].say(alert('ENGINE_HALTED', true));
  sockets[0].say({ type: 'UPDATE', channel: 'x', offset: 1, data: {} });
  let state = stream.getSnapshot();
  assert.equal(state.regime, 'crash');
  assert.equal(state.mood.persona.headline, 'SELL EVERYTHING');
  assert.equal(state.mood.type, undefined);
  assert.deepEqual(state.alerts.map((a) => a.code), ['MARKET_CRASH', 'ENGINE_HALTED']);

  sockets[0].say(alert('MARKET_CRASH', false));
  state = stream.getSnapshot();
  assert.deepEqual(state.alerts.map((a) => a.code), ['ENGINE_HALTED']);
  assert.equal(seen.length, 5, 'open, the mood, two raises, one clear: one change each');
  stream.close();
  assert.equal(sockets[0].closed, 1000);
  assert.equal(stream.getSnapshot().connected, false);
});

test('after a drop it reconnects with backoff and jitter, and takes the daemon word on connect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { FakeWebSocket, sockets } = fakeWebSocket();
  const stream = new MarketStream('ws://bff.test/ws/market-stream', {
    WebSocket: FakeWebSocket,
    random: () => 0.5,
  });
  sockets[0].accept();
  sockets[0].say(crash);
  sockets[0].say(alert('MARKET_CRASH', true));
  sockets[0].drop();
  assert.equal(stream.getSnapshot().connected, false);
  assert.equal(stream.getSnapshot().regime, 'crash', 'the last mood stays shown while away');
  // 1 s ceiling, jittered to 750 ms; then 1500 ms (2 s), 3000 ms (4 s).
  for (const [wait, count] of [[749, 1], [1, 2]]) {
    t.mock.timers.tick(wait);
    assert.equal(sockets.length, count);
  }
  sockets[1].drop();
  t.mock.timers.tick(1499);
  assert.equal(sockets.length, 2);
  t.mock.timers.tick(1);
  assert.equal(sockets.length, 3);

  // Back: the mood on connect, and MARKET_CRASH is no longer listed, so it cleared meanwhile.
  sockets[2].accept();
  sockets[2].say({ ...crash, regime: 'neutral', label: 'Neutral' });
  assert.deepEqual(
    { ...stream.getSnapshot(), mood: undefined },
    { regime: 'neutral', mood: undefined, alerts: [], connected: true, error: null },
  );
  // A message received resets the backoff: the next drop waits 1 s again.
  sockets[2].drop();
  t.mock.timers.tick(750);
  assert.equal(sockets.length, 4);
  stream.close();
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 4, 'closed: no more tries');
});

test('a revoked token (4401) stops the retries and says why', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { FakeWebSocket, sockets } = fakeWebSocket();
  const stream = new MarketStream('ws://bff.test/ws/market-stream', { WebSocket: FakeWebSocket, token: 'old' });
  sockets[0].accept();
  sockets[0].drop(4401, 'token no longer accepted');
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 1);
  assert.equal(stream.getSnapshot().connected, false);
  assert.match(stream.getSnapshot().error, /token no longer valid \(4401 token no longer accepted\)/);
});

test('without any WebSocket it says what to do', () => {
  const global = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  delete globalThis.WebSocket;
  try {
    assert.throws(
      () => new MarketStream('ws://bff.test/', { connect: false }),
      /no WebSocket here; run Node 22\+ \(Node 20\.10\+: node --experimental-websocket\)/,
    );
  } finally {
    if (global) Object.defineProperty(globalThis, 'WebSocket', global);
  }
});
