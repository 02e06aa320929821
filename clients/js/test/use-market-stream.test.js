// useMarketStream against the real daemon: a component rendered with react-test-renderer (no
// DOM) shows the regime the daemon announces, the turn when the engine's market falls, and the
// connection dropping when the daemon stops and coming back when it is started on the same port.
// The daemon and the engine: ../support/daemon.js.
import { test } from 'node:test';
import { createElement } from 'react';
import TestRenderer from 'react-test-renderer';
import { useMarketStream } from '../react.js';
import { bffBinary, configFile, PATIENCE_MS, startDaemon, startEngine, stopDaemon, until } from '../support/daemon.js';

test('useMarketStream shows the daemon regime, its turn, the drop and the reconnect', { timeout: 8 * PATIENCE_MS }, async (t) => {
  const bin = bffBinary();
  if (!bin) {
    t.skip('no bff binary: build it (cargo build) or set BFF_BIN');
    return;
  }
  const engine = await startEngine();
  const config = configFile(t, engine, [
    '[regime]',
    '# A turn is announced after two readings: quick, and still through the dwell.',
    'min_dwell_ms = 300',
  ]);
  let daemon = await startDaemon(bin, config, '127.0.0.1:0');
  t.after(() => {
    daemon.child.kill('SIGKILL');
    engine.close();
  });
  const url = `ws://${daemon.addr}/ws/market-stream`;

  function Probe() {
    const { regime, alerts, connected } = useMarketStream(url, { minDelayMs: 200, maxDelayMs: 1000 });
    const codes = alerts.map((a) => `${a.level}:${a.code}`).join(',');
    return createElement('p', null, `${connected ? 'connected' : 'disconnected'} ${regime ?? '-'} [${codes}]`);
  }
  const renderer = TestRenderer.create(createElement(Probe));
  const shown = () => renderer.toJSON().children.join('');

  await until(() => shown() === 'connected neutral []', 'connected, the sample market neutral', shown);

  // The market falls half a percent and more a tick: the daemon announces crash, and raises
  // MARKET_CRASH.
  engine.velocity = -0.01;
  await until(() => shown() === 'connected crash [critical:MARKET_CRASH]', 'the crash', shown);

  // The daemon stops: the component says so and keeps the last mood shown.
  await stopDaemon(daemon);
  await until(() => shown() === 'disconnected crash [critical:MARKET_CRASH]', 'the drop', shown);

  // Started again on the same port: the hook reconnects by itself and shows what the new
  // daemon says (still crash once its dwell is over).
  daemon = await startDaemon(bin, config, daemon.addr);
  await until(() => shown().startsWith('connected '), 'the reconnect', shown);
  await until(() => shown() === 'connected crash [critical:MARKET_CRASH]', 'the crash again', shown);

  // Unmounted: the connection closes and is not retried.
  renderer.unmount();
  await stopDaemon(daemon);
});
