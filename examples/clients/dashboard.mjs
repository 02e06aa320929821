// The smallest dashboard, in Node.js 22+ (Node 20: `node --experimental-websocket dashboard.mjs`),
// on the repository's client library (clients/js/bff.js), which connects, reconnects, resumes
// and subscribes again; this file prints what comes.
// Usage: node dashboard.mjs [ws://localhost:3000] [messages to read, default: forever] [channel]
//        [--token JWT] [--delta]
// The count takes every message: packets and, with a channel, that channel's updates.
// With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
// prints each relayed message as `UPDATE <channel> offset=<n>`.
// A daemon with auth.secret needs a token (`bff token --secret-file F --sub NAME` prints one):
// `--token JWT`, or the BFF_TOKEN environment variable. A refused connection is reported with
// its HTTP status and the daemon's reason (401: no or a bad token, 403: origin not allowed,
// 429: too many connections from this address) and the exit code is 1.
// When the connection drops, it reconnects (after about 1, 2, 4 … 30 s, jittered) saying where
// it left off, so the daemon sends what it missed, and prints `RECONNECTED resumed=true` (false:
// starting afresh); its channel too: it subscribes again with the last offset it got, and the
// `SUBSCRIBED` line ends with `resumed=[<channel>:true]` when the missed updates follow.
// With --delta it asks for fossil deltas (`?delta=fossil`, docs/PROTOCOL.md §13.2), which the
// library applies (it needs `npm ci --prefix clients/js` then): the same lines, each TELEMETRY
// ending ` delta=true` (` delta=false` for a whole one), as dashboard.py prints them.
import { connect } from '../../clients/js/bff.js';

const inNode = typeof process !== 'undefined' && !!(process.versions && process.versions.node);
const args = inNode ? process.argv.slice(2) : [];
let token = inNode ? process.env.BFF_TOKEN : undefined;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--token' || args[i].startsWith('--token=')) {
    const [flag, value] = args[i].includes('=') ? [1, args[i].slice('--token='.length)] : [2, args[i + 1]];
    token = value;
    args.splice(i, flag);
    break;
  }
}
const delta = args.includes('--delta');
if (delta) args.splice(args.indexOf('--delta'), 1);
const url = args[0] || 'ws://localhost:3000';
const limit = Number(args[1] || Infinity);
const channel = args[2];
let seen = 0;
let lives = 0; // connections opened: from the second on, a WELCOME says whether it resumed
let last = null; // the seq and epoch of the last packet printed
let fromDelta = false; // with --delta: whether the frame being read came as a delta

function start() {
  // With --delta, a look at each frame as it came, before the library turns it into a packet.
  const Socket = !delta
    ? WebSocket
    : class extends WebSocket {
        constructor(...args) {
          super(...args);
          this.addEventListener('message', (event) => {
            fromDelta = JSON.parse(event.data).delta === true;
          });
        }
      };
  const client = connect(url, { token, delta, channels: channel ? [channel] : [], WebSocket: Socket, onStatus });
  client.on('*', (packet) => {
    if (packet.type === 'WELCOME' || packet.type === 'TELEMETRY') {
      if (packet.type === 'WELCOME' && lives > 1) console.log(`RECONNECTED resumed=${packet.resumed === true}`);
      // A resume that missed nothing starts with the packet it already has.
      if (last && packet.seq === last.seq && packet.epoch === last.epoch) return;
      last = { seq: packet.seq, epoch: packet.epoch };
      const { status, market, sources } = packet.data;
      const stale = Object.keys(sources).filter((name) => !sources[name].ok);
      const suffix = delta && packet.type === 'TELEMETRY' ? ` delta=${fromDelta}` : '';
      console.log(`${packet.type} seq=${packet.seq} status=${status} price=${market.price} stale=[${stale}]${suffix}`);
    } else if (packet.type === 'SUBSCRIBED') {
      const resumed = packet.resumed
        ? ` resumed=[${Object.entries(packet.resumed).map(([c, ok]) => `${c}:${ok}`)}]`
        : '';
      console.log(`SUBSCRIBED channels=[${packet.channels}]${resumed}`);
      for (const { channel, reason } of packet.rejected) console.log(`REJECTED ${channel}: ${reason}`);
    } else if (packet.type === 'REGIME') {
      const { previous, regime, persona } = packet.data;
      console.log(`REGIME ${previous}>${regime} ${persona.headline}`);
    } else if (packet.type === 'ALERT') {
      const { code, level, active } = packet.data;
      console.log(`ALERT ${code} level=${level} active=${active}`);
    } else if (packet.type === 'UPDATE') {
      console.log(`UPDATE ${packet.channel} offset=${packet.offset}`);
    }
    if (++seen >= limit) client.close();
  });

  function onStatus(status) {
    if (status.state === 'live') {
      lives++;
    } else if (status.state === 'reconnecting' && lives === 0) {
      // Never connected: no retry; the error says why.
      client.close();
    } else if (status.state === 'closed' && status.code === 1000 && lives > 0) {
      console.log(`closed code=${status.code}`);
    } else if (status.state === 'closed' && status.code === 1000) {
      refused(new URL(url));
    } else if (status.state === 'closed') {
      // A revoked token (4401), or the delta decoder not installed.
      console.error(`error: closed ${status.code}: ${status.reason}`);
      if (inNode) process.exitCode = 1;
    }
  }
}

// The first connection failed: say why, and end with exit code 1. The WebSocket API does not
// give the handshake's HTTP status, so in Node the same handshake is asked again to read it.
async function refused(target) {
  const answer = inNode ? await handshakeAnswer(target) : {};
  let why = 'cannot reach the daemon; is it running?';
  if (answer.status === 401) {
    why = `HTTP 401 ${answer.message}: ${answer.body} ` + (token
      ? '(the token was refused: expired, or signed with another secret than the daemon\'s?)'
      : '(this daemon needs a token: give one with --token or BFF_TOKEN; `bff token --secret-file F --sub NAME` prints one)');
  } else if (answer.status && answer.status !== 101) {
    why = `HTTP ${answer.status} ${answer.message}: ${answer.body}`;
    if (answer.retryAfter) why += ` (Retry-After: ${answer.retryAfter} s)`;
  } else if (answer.error) {
    why = `cannot reach the daemon (${answer.error}); is it running?`;
  }
  console.error(`error: ${why}`);
  if (inNode) process.exitCode = 1;
}

// Node only: the HTTP answer to this client's handshake, `{status, message, body, retryAfter}`,
// or `{error}` when there was none.
async function handshakeAnswer(target) {
  const http = await import(target.protocol === 'wss:' ? 'node:https' : 'node:http');
  const { randomBytes } = await import('node:crypto');
  const headers = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
  };
  if (token) headers['Sec-WebSocket-Protocol'] = `token, ${token}`;
  const address = new URL(target);
  address.protocol = target.protocol === 'wss:' ? 'https:' : 'http:';
  return new Promise((resolve) => {
    const request = http.request(address, { headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({
        status: response.statusCode,
        message: response.statusMessage,
        body: body.trim(),
        retryAfter: response.headers['retry-after'],
      }));
    });
    request.on('upgrade', (response, socket) => {
      socket.destroy();
      resolve({ status: 101 });
    });
    request.on('error', (err) => resolve({ error: err.message }));
    request.end();
  });
}

if (typeof WebSocket === 'undefined') {
  // Node 20 has the WebSocket client behind a flag; Node 22 has it on.
  console.error(`error: this Node.js (${inNode ? process.version : 'runtime'}) has no WebSocket: ` +
    'run `node --experimental-websocket dashboard.mjs …` on Node 20, or use Node 22 or later');
  if (inNode) process.exitCode = 2;
} else {
  start();
}
