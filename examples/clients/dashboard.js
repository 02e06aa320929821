// The smallest dashboard: the same code runs in a browser page and in Node.js 22+
// (Node 20: `node --experimental-websocket dashboard.js`).
// Usage: node dashboard.js [ws://localhost:3000] [messages to read, default: forever] [channel]
// With a channel (e.g. agent.updates, one of the daemon's redis.relay), it subscribes to it and
// prints each relayed message as `UPDATE <channel> offset=<n>`.
const argv = typeof process !== 'undefined' ? process.argv : [];
const url = argv[2] || 'ws://localhost:3000';
const limit = Number(argv[3] || Infinity);
const channel = argv[4];
const ws = new WebSocket(url);
let seen = 0;

ws.onopen = () => {
  if (channel) ws.send(JSON.stringify({ type: 'SUBSCRIBE', channels: [channel] }));
};
ws.onmessage = (event) => {
  const packet = JSON.parse(event.data);
  if (packet.type === 'WELCOME' || packet.type === 'TELEMETRY') {
    const { status, market, sources } = packet.data;
    const stale = Object.keys(sources).filter((name) => !sources[name].ok);
    console.log(`${packet.type} seq=${packet.seq} status=${status} price=${market.price} stale=[${stale}]`);
  } else if (packet.type === 'SUBSCRIBED') {
    console.log(`SUBSCRIBED channels=[${packet.channels}]`);
    for (const { channel, reason } of packet.rejected) console.log(`REJECTED ${channel}: ${reason}`);
  } else if (packet.type === 'UPDATE') {
    console.log(`UPDATE ${packet.channel} offset=${packet.offset}`);
  }
  if (++seen >= limit) ws.close(1000);
};
ws.onclose = (event) => console.log(`closed code=${event.code}`);
ws.onerror = () => console.log('error: cannot reach the daemon; is it running?');
