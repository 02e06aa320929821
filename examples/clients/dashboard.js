// The smallest dashboard: the same code runs in a browser page and in Node.js 22+
// (Node 20: `node --experimental-websocket dashboard.js`).
// Usage: node dashboard.js [ws://localhost:3000] [messages to read, default: forever] [channel]
//        [--token JWT]
// The count takes every message: packets and, with a channel, that channel's updates.
// With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
// prints each relayed message as `UPDATE <channel> offset=<n>`.
// A daemon with auth.secret needs a token (`bff token --secret-file F --sub NAME` prints one):
// `--token JWT`, or the BFF_TOKEN environment variable. A refused connection is reported with
// its HTTP status and the daemon's reason (401: no or a bad token, 403: origin not allowed,
// 429: too many connections from this address) and the exit code is 1.
// When the connection drops, it reconnects (after 1, 2, 4 … 30 s) saying where it left off, so
// the daemon sends what it missed, and prints `RECONNECTED resumed=true` (false: starting afresh);
// its channel too: it subscribes again with the last offset it got, and the `SUBSCRIBED` line
// ends with `resumed=[<channel>:true]` when the missed updates follow.
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
const url = args[0] || 'ws://localhost:3000';
const limit = Number(args[1] || Infinity);
const channel = args[2];
let seen = 0, attempt = 0;
let connected = false; // at least once: from then on, a lost connection is retried
let last = null; // the seq and epoch of the last packet, to resume from
const offsets = {}; // the last offset of each channel…
let offsetsEpoch = null; // …and their epoch

function connect() {
  const target = new URL(url);
  if (last) {
    target.searchParams.set('since', last.seq);
    target.searchParams.set('epoch', last.epoch);
  }
  // The token goes as a subprotocol, the one way a browser can send it.
  const ws = token ? new WebSocket(target, ['token', token]) : new WebSocket(target);
  const reconnect = connected;
  let open = false, closing = false;

  ws.onopen = () => {
    connected = open = true;
    if (channel) {
      const subscribe = { type: 'SUBSCRIBE', channels: [channel] };
      if (offsetsEpoch !== null) Object.assign(subscribe, { since: offsets, epoch: offsetsEpoch });
      ws.send(JSON.stringify(subscribe));
    }
  };
  ws.onmessage = (event) => {
    const packet = JSON.parse(event.data);
    if (packet.type === 'WELCOME' || packet.type === 'TELEMETRY') {
      if (packet.type === 'WELCOME' && reconnect) {
        attempt = 0;
        console.log(`RECONNECTED resumed=${packet.resumed === true}`);
      }
      // A resume that missed nothing starts with the packet it already has.
      if (last && packet.seq === last.seq && packet.epoch === last.epoch) return;
      last = { seq: packet.seq, epoch: packet.epoch };
      const { status, market, sources } = packet.data;
      const stale = Object.keys(sources).filter((name) => !sources[name].ok);
      console.log(`${packet.type} seq=${packet.seq} status=${status} price=${market.price} stale=[${stale}]`);
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
      offsets[packet.channel] = packet.offset;
      offsetsEpoch = last ? last.epoch : null;
      console.log(`UPDATE ${packet.channel} offset=${packet.offset}`);
    }
    if (++seen >= limit) {
      closing = true;
      ws.close(1000);
    }
  };
  ws.onclose = (event) => {
    // Closed by us: done. Never connected: the error said why. Otherwise the daemon went away:
    // come back.
    if (closing) return console.log(`closed code=${event.code}`);
    if (open) retry();
  };
  ws.onerror = () => {
    if (!connected) refused(target);
    else if (!open) retry(); // a failed reconnect (Node 20 sends no close event for it)
  };
}

function retry() {
  setTimeout(connect, Math.min(30, 2 ** attempt++) * 1000);
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
    'run `node --experimental-websocket dashboard.js …` on Node 20, or use Node 22 or later');
  if (inNode) process.exitCode = 2;
} else {
  connect();
}
