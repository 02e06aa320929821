// The smallest dashboard: the same code runs in a browser page and in Node.js 22+
// (Node 20: `node --experimental-websocket dashboard.js`).
// Usage: node dashboard.js [ws://localhost:3000] [packets to read, default: forever]
const url = (typeof process !== 'undefined' && process.argv[2]) || 'ws://localhost:3000';
const limit = Number((typeof process !== 'undefined' && process.argv[3]) || Infinity);
const ws = new WebSocket(url);
let seen = 0;

ws.onmessage = (event) => {
  const packet = JSON.parse(event.data);
  if (packet.type === 'WELCOME' || packet.type === 'TELEMETRY') {
    const { status, market, sources } = packet.data;
    const stale = Object.keys(sources).filter((name) => !sources[name].ok);
    console.log(`${packet.type} seq=${packet.seq} status=${status} price=${market.price} stale=[${stale}]`);
  }
  if (++seen >= limit) ws.close(1000);
};
ws.onclose = (event) => console.log(`closed code=${event.code}`);
ws.onerror = () => console.log('error: cannot reach the daemon; is it running?');
