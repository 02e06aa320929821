// The smallest dashboard: the same code runs in a browser page and in Node.js 22+
// (Node 20: `node --experimental-websocket dashboard.js`).
// Usage: node dashboard.js [ws://localhost:3000] [messages to read, default: forever] [channel]
// With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
// prints each relayed message as `UPDATE <channel> offset=<n>`.
// When the connection drops, it reconnects (after 1, 2, 4 … 30 s) saying where it left off, so
// the daemon sends what it missed, and prints `RECONNECTED resumed=true` (false: starting afresh);
// its channel too: it subscribes again with the last offset it got, and the `SUBSCRIBED` line
// ends with `resumed=[<channel>:true]` when the missed updates follow.
const argv = typeof process !== 'undefined' ? process.argv : [];
const url = argv[2] || 'ws://localhost:3000';
const limit = Number(argv[3] || Infinity);
const channel = argv[4];
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
  const ws = new WebSocket(target);
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
    // Closed by us, or never connected at all: done. Otherwise the daemon went away: come back.
    if (closing || !connected) return console.log(`closed code=${event.code}`);
    if (open) retry();
  };
  ws.onerror = () => {
    if (!connected) console.log('error: cannot reach the daemon; is it running?');
    else if (!open) retry(); // a failed reconnect (Node 20 sends no close event for it)
  };
}

function retry() {
  setTimeout(connect, Math.min(30, 2 ** attempt++) * 1000);
}

connect();
