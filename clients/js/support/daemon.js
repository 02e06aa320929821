// What the Node tests run against: the real `bff` binary (BFF_BIN, else target/debug/bff) and an
// engine served from the repository's fixtures. Not a test file itself (node --test skips it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** How long any awaited condition may take: it bounds a hang, it does not measure speed. */
export const PATIENCE_MS = 30000;

export function fixture(name) {
  return JSON.parse(readFileSync(join(ROOT, 'fixtures/engine', name), 'utf8'));
}

/**
 * The engine: the sample state with `velocity` as set (and, with `moving`, the price a cent
 * higher at each reading, so that every packet differs), the sample agents and models, and
 * `actions[name]` answering `POST /api/actions/<name>` (an async function returning the body).
 */
export async function startEngine({ moving = false, actions = {} } = {}) {
  const state = fixture('state-current.json');
  const answers = {
    '/agents': fixture('agents-raw-records.json'),
    '/models': fixture('models-raw-records.json'),
  };
  const engine = { velocity: state.market.velocity, readings: 0 };
  const server = createServer(async (req, res) => {
    const action = req.method === 'POST' && req.url.match(/^\/api\/actions\/([a-z-]+)$/);
    let body;
    if (action && actions[action[1]]) {
      body = await actions[action[1]]();
    } else if (req.url === '/state') {
      const price = moving ? state.market.price + 0.01 * ++engine.readings : state.market.price;
      body = { ...state, market: { ...state.market, price, velocity: engine.velocity } };
    } else {
      body = answers[req.url];
    }
    res.writeHead(body ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(body ? JSON.stringify(body) : '');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  engine.url = `http://127.0.0.1:${server.address().port}`;
  engine.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return engine;
}

/** `bff --config FILE --listen ADDR`, once it logged where it listens. */
export async function startDaemon(bin, config, listen) {
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

export async function stopDaemon(daemon) {
  if (daemon.child.exitCode !== null) return;
  const exited = once(daemon.child, 'exit');
  daemon.child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, 'bff exits cleanly on SIGTERM');
}

/** Waits until `done()` holds, polling; fails with `what` and `last()` after PATIENCE_MS. */
export async function until(done, what, last) {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > PATIENCE_MS) {
      assert.fail(`timed out waiting for ${what}: the component shows ${JSON.stringify(last())}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function bffBinary() {
  const bin = process.env.BFF_BIN || join(ROOT, 'target/debug/bff');
  return existsSync(bin) ? bin : null;
}

/**
 * A bff.toml in a directory of its own polling `engine` every 150 ms, with `extra` lines after;
 * `t.after` removes it.
 */
export function configFile(t, engine, extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'bff-js-'));
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
      ...extra,
      '',
    ].join('\n'),
  );
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return config;
}
