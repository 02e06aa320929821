// useMarketStream against the real daemon: a component rendered with react-test-renderer (no
// DOM) shows the regime the daemon announces, the turn when the engine's market falls, and the
// connection dropping when the daemon stops and coming back when it is started on the same port.
// The daemon is the `bff` binary in BFF_BIN (`cargo test --test suite cli::` sets it; else
// target/debug/bff), polling an engine this test serves from the repository's fixtures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createElement } from 'react';
import TestRenderer from 'react-test-renderer';
import { useMarketStream } from '../react.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** How long any awaited condition may take: it bounds a hang, it does not measure speed. */
const PATIENCE_MS = 30000;

function fixture(name) {
  return JSON.parse(readFileSync(join(ROOT, 'fixtures/engine', name), 'utf8'));
}

/** The engine: the sample state with `velocity` as set, and the sample agents and models. */
async function startEngine() {
  const state = fixture('state-current.json');
  const answers = {
    '/agents': fixture('agents-raw-records.json'),
    '/models': fixture('models-raw-records.json'),
  };
  const engine = { velocity: state.market.velocity };
  const server = createServer((req, res) => {
    const body = req.url === '/state'
      ? { ...state, market: { ...state.market, velocity: engine.velocity } }
      : answers[req.url];
    res.writeHead(body ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(body ? JSON.stringify(body) : '');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  engine.url = `http://127.0.0.1:${server.address().port}`;
  engine.close = () => server.close();
  return engine;
}

/** `bff --config FILE --listen ADDR`, once it logged where it listens. */
async function startDaemon(bin, config, listen) {
  const child = spawn(bin, ['--config', config, '--listen', listen, '--log-format', 'json'], {
    env: { ...process.env, RUST_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bff did not log Listening within ${PATIENCE_MS} ms`)), PATIENCE_MS);
    child.once('exit', (code) => reject(new Error(`bff exited with ${code} before listening`)));
    lines.on('line', (line) => {
      const event = JSON.parse(line);
      if (JSON.stringify(event).includes('Listening') && event.addr) {
        clearTimeout(timer);
        resolve(event.addr);
      }
    });
  });
  return { child, addr };
}

async function stopDaemon(daemon) {
  if (daemon.child.exitCode !== null) return;
  const exited = once(daemon.child, 'exit');
  daemon.child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, 'bff exits cleanly on SIGTERM');
}

/** Waits until `done()` holds, polling; fails with `what` and `last()` after PATIENCE_MS. */
async function until(done, what, last) {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > PATIENCE_MS) {
      assert.fail(`timed out waiting for ${what}: the component shows ${JSON.stringify(last())}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function bffBinary() {
  const bin = process.env.BFF_BIN || join(ROOT, 'target/debug/bff');
  return existsSync(bin) ? bin : null;
}

test('useMarketStream shows the daemon regime, its turn, the drop and the reconnect', { timeout: 8 * PATIENCE_MS }, async (t) => {
  const bin = bffBinary();
  if (!bin) {
    t.skip('no bff binary: build it (cargo build) or set BFF_BIN');
    return;
  }
  const engine = await startEngine();
  const dir = mkdtempSync(join(tmpdir(), 'bff-hook-'));
  const config = join(dir, 'bff.toml');
  writeFileSync(
    config,
    [
      '[engine]',
      `url = "${engine.url}"`,
      'state = "/state"',
      'agents = "/agents"',
      'models = "/models"',
      'poll_interval_ms = 150',
      'timeout_ms = 120',
      '[regime]',
      '# A turn is announced after two readings: quick, and still through the dwell.',
      'min_dwell_ms = 300',
      '',
    ].join('\n'),
  );
  let daemon = await startDaemon(bin, config, '127.0.0.1:0');
  t.after(() => {
    daemon.child.kill('SIGKILL');
    engine.close();
    rmSync(dir, { recursive: true, force: true });
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
