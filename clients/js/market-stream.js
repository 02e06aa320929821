// The market's mood and alerts from a bff daemon's market-stream path (docs/PROTOCOL.md §12.6),
// as a small store any framework can watch: `subscribe(listener)` and `getSnapshot()` are what
// React's `useSyncExternalStore` asks for (see ./react.js). No build step, no dependency: the
// browser's WebSocket, or Node's (22+, or 20.10+ with `--experimental-websocket`), or one passed
// in `options.WebSocket` (e.g. the `ws` package's).

/** The regime words the daemon sends, exactly. */
export const REGIMES = Object.freeze(['crash', 'bull', 'neutral']);

/** Close code of a token the daemon no longer accepts: retrying with it would only be refused. */
const TOKEN_REVOKED = 4401;

const INITIAL = Object.freeze({
  regime: null,
  mood: null,
  alerts: Object.freeze([]),
  connected: false,
  error: null,
});

/** The state before any message: what a server render or a first render shows. */
export function initialState() {
  return INITIAL;
}

/**
 * One connection to `/ws/market-stream`, kept open: after a drop it reconnects after 1, 2, 4 …
 * up to 30 s (each wait jittered so that a wall of screens does not come back all at once), and
 * starts again from the daemon's word on connect (the mood, then every active alert).
 */
export class MarketStream {
  #url;
  #token;
  #WebSocket;
  #minDelayMs;
  #maxDelayMs;
  #random;
  #ws = null;
  #timer = null;
  #attempt = 0;
  #running = false;
  #fresh = false;
  #state = INITIAL;
  #listeners = new Set();

  /**
   * @param {string|URL} url the daemon's market-stream URL, e.g. `ws://localhost:3000/ws/market-stream`
   * @param {object} [options] see market-stream.d.ts
   */
  constructor(url, options = {}) {
    this.#url = String(url);
    this.#token = options.token ?? null;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#minDelayMs = options.minDelayMs ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 30000;
    this.#random = options.random ?? Math.random;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError(
        'MarketStream: no WebSocket here; run Node 22+ (Node 20.10+: node --experimental-websocket) ' +
          'or pass options.WebSocket (e.g. `import WebSocket from "ws"`)',
      );
    }
    if (options.connect !== false) this.open();
  }

  /** Subscribes `listener` to every change of the state; returns the unsubscribe function. */
  subscribe = (listener) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** The current state; the same object until something changes (as useSyncExternalStore needs). */
  getSnapshot = () => this.#state;

  /** Connects (again, after `close()`); does nothing while already running. */
  open() {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    this.#connect();
  }

  /** Closes the connection and stops reconnecting; `connected` turns false. */
  close() {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // Still connecting in some implementations: dropped all the same.
      }
    }
    this.#set({ connected: false });
  }

  #connect() {
    let ws;
    try {
      // The token goes as a subprotocol, the one way a browser can send it.
      ws = this.#token ? new this.#WebSocket(this.#url, ['token', this.#token]) : new this.#WebSocket(this.#url);
    } catch (err) {
      this.#set({ error: `cannot connect to ${this.#url}: ${err?.message ?? err}` });
      return this.#retry();
    }
    this.#ws = ws;
    this.#fresh = true;
    ws.onopen = () => {
      this.#set({ connected: true, error: null });
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onerror = () => {
      // Always followed by close, which decides what comes next.
    };
    ws.onclose = (event) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (event.code === TOKEN_REVOKED) {
        this.#running = false;
        this.#set({ connected: false, error: `token no longer valid (${event.code} ${event.reason || ''})`.trim() });
        return;
      }
      this.#set({ connected: false });
      this.#retry();
    };
  }

  #retry() {
    if (!this.#running) return;
    const ceiling = Math.min(this.#maxDelayMs, this.#minDelayMs * 2 ** this.#attempt);
    this.#attempt++;
    // Between half the ceiling and all of it.
    const delay = ceiling / 2 + this.#random() * (ceiling / 2);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#running) this.#connect();
    }, delay);
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(typeof text === 'string' ? text : String(text));
    } catch {
      return;
    }
    if (!message || typeof message !== 'object') return;
    if (message.type === 'market_regime') {
      const { type, ...mood } = message;
      this.#attempt = 0;
      // A connection starts with the mood then every active alert: what was active before
      // the drop and is not listed again has cleared meanwhile.
      const alerts = this.#fresh ? [] : this.#state.alerts;
      this.#fresh = false;
      this.#set({ regime: REGIMES.includes(mood.regime) ? mood.regime : null, mood, alerts });
    } else if (message.type === 'alert') {
      const { type, ...alert } = message;
      const others = this.#state.alerts.filter((a) => a.code !== alert.code);
      this.#set({ alerts: alert.active === true ? [...others, alert] : others });
    }
  }

  #set(change) {
    const next = { ...this.#state, ...change };
    if (Object.keys(next).every((key) => next[key] === this.#state[key])) return;
    this.#state = Object.freeze(next);
    for (const listener of [...this.#listeners]) listener(this.#state);
  }
}
