// A client for a bff daemon's stream paths (docs/PROTOCOL.md §2–§4, §9–§13): every message as a
// plain object whatever the encoding asked for (fossil deltas and MessagePack are decoded here;
// permessage-deflate is the WebSocket's own), reconnects with backoff and jitter, resumes with
// `since`/`epoch` and relay channels with their offsets, and commands whose COMMAND_RESULT
// resolves a promise by `id`. No build step: the browser's WebSocket, Node's (22+, or 20.10+ with
// `--experimental-websocket`), or one passed in `options.WebSocket`. The decoders (npm's
// `fossil-delta`, `@msgpack/msgpack`) are imported only by a client that asks for them: one that
// asks for neither needs this file alone (the daemon's live page serves it so).

/** Close code of a token the daemon no longer accepts: retrying with it would only be refused. */
const TOKEN_REVOKED = 4401;
/** Close code this client uses when it drops a connection to resume (a delta it cannot apply). */
const RESYNC = 4000;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Each decoder's module, imported at most once, when a client first asks for it. */
const modules = new Map();

/** The decoders `options` ask for: `{applyDelta}` for delta, `{decode}` for MessagePack. */
async function decoders(options) {
  const load = (name) => {
    if (!modules.has(name)) modules.set(name, import(name));
    return modules.get(name).catch((error) => {
      modules.delete(name);
      throw new Error(`bff: cannot load ${name} (npm install ${name}, or map it in an import map): ${error.message}`);
    });
  };
  const found = {};
  if (options.delta) found.applyDelta = (await load('fossil-delta')).applyDelta;
  if (options.format === 'msgpack') found.decode = (await load('@msgpack/msgpack')).decode;
  return found;
}

/**
 * The `data` of a JSON packet frame as its bytes came: after the envelope's first `"data":`, up
 * to its last `,"epoch":` (§13.2: what the next delta applies to).
 */
export function rawData(text) {
  const start = text.indexOf('"data":');
  const end = text.lastIndexOf(',"epoch":');
  if (start < 0 || end < start) throw new Error('bff: a packet frame without "data" and "epoch"');
  return encoder.encode(text.slice(start + '"data":'.length, end));
}

/** `url` with `query`'s entries set (an undefined value removes the key). */
function withQuery(url, query) {
  const u = new URL(url);
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) u.searchParams.delete(key);
    else u.searchParams.set(key, String(value));
  }
  return u.toString();
}

/** Opens a client on a stream path (`ws://host:3000/ws/stream`); see bff.d.ts. */
export function connect(url, options = {}) {
  return new BffClient(url, options);
}

/** One daemon connection, kept open until `close()` or a revoked token (4401). */
export class BffClient {
  #url;
  #options;
  #WebSocket;
  #ws = null;
  #timer = null;
  #attempt = 0;
  #running = true;
  #listeners = new Map();
  #channels = new Set();
  #offsets = new Map();
  #pending = new Map();
  #commands = 0;
  #last = null; // { seq, epoch } of the last packet
  #base = null; // the raw bytes of the last packet's data, for the next delta
  #status = { state: 'connecting', attempt: 0 };
  #decoders = {}; // what decoders() found, before the first connection opens

  constructor(url, options) {
    this.#options = options;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError(
        'bff: no WebSocket here; run Node 22+ (Node 20.10+: node --experimental-websocket) ' +
          'or pass options.WebSocket (e.g. `import WebSocket from "ws"`)',
      );
    }
    if (options.delta && options.format === 'msgpack') {
      throw new TypeError('bff: delta and format "msgpack" are not offered together (PROTOCOL §13)');
    }
    const query = {};
    if (options.delta) query.delta = 'fossil';
    if (options.format) query.format = options.format;
    this.#url = withQuery(String(url), query);
    for (const channel of options.channels ?? []) this.#channels.add(channel);
    this.#setStatus({ state: 'connecting', attempt: 0 });
    if (!options.delta && options.format !== 'msgpack') {
      this.#open();
      return;
    }
    decoders(options).then(
      (found) => {
        this.#decoders = found;
        if (this.#running) this.#open();
      },
      (error) => {
        if (!this.#running) return;
        this.#running = false;
        this.#options.onError?.(error);
        this.#setStatus({ state: 'closed', code: 1006, reason: error.message });
      },
    );
  }

  /** The connection's state, as the last status event said it. */
  get status() {
    return this.#status;
  }

  /** Calls `listener(message)` for each message of `type` (`'*'`: all); returns an unsubscribe. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type).delete(listener);
  }

  /**
   * Subscribes to a relay channel (or pattern), now (its SUBSCRIBED answers, even when held
   * already) and on every reconnect, with its offsets; one the daemon refuses is not asked again.
   */
  subscribe(channel) {
    this.#channels.add(channel);
    if (this.#ws?.readyState === 1) this.#send({ type: 'SUBSCRIBE', channels: [channel] });
  }

  /** Leaves a relay channel (or pattern), now and on every reconnect. */
  unsubscribe(channel) {
    this.#channels.delete(channel);
    this.#offsets.delete(channel);
    if (this.#ws?.readyState === 1) this.#send({ type: 'UNSUBSCRIBE', channels: [channel] });
  }

  /**
   * Sends `{type: "COMMAND", action, id, ...args}`; resolves with its COMMAND_RESULT (whether `ok`
   * or not), rejects when the connection is not open or closes first.
   */
  command(action, args = {}) {
    if (this.#ws?.readyState !== 1) {
      return Promise.reject(new Error(`bff: not connected (${this.#status.state}): ${action} not sent`));
    }
    const id = `c${++this.#commands}-${Math.random().toString(36).slice(2, 10)}`;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, action });
      this.#send({ ...args, type: 'COMMAND', action, id });
    });
  }

  /** Closes the connection (1000) and stops reconnecting. */
  close() {
    this.#running = false;
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(1000);
    }
    this.#failPending(1000, 'closed by the client');
    this.#setStatus({ state: 'closed', code: 1000, reason: 'closed by the client' });
  }

  #send(message) {
    this.#ws.send(JSON.stringify(message));
  }

  #setStatus(status) {
    this.#status = status;
    this.#options.onStatus?.(status);
  }

  #emit(message) {
    for (const type of [message.type, '*']) {
      for (const listener of this.#listeners.get(type) ?? []) listener(message);
    }
  }

  #open() {
    const query = this.#last ? { since: this.#last.seq, epoch: this.#last.epoch } : {};
    const token = this.#options.token;
    const ws = new this.#WebSocket(withQuery(this.#url, query), token ? ['token', token] : undefined);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onopen = () => {
      this.#attempt = 0;
      this.#setStatus({ state: 'live' });
      if (this.#channels.size) this.#resubscribe();
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = this.#receive(event.data);
      } catch (error) {
        // A frame it cannot read (never expected): start again from where it left off.
        this.#options.onError?.(error);
        ws.close(RESYNC, 'resync');
        return;
      }
      // Outside the try: a listener's own error is its own, not a frame to resync for.
      this.#emit(message);
    };
    ws.onclose = (event) => this.#closed(ws, event.code, event.reason);
    // A connection that never opened: browsers follow the error with a close, Node 20 does not.
    ws.onerror = () => {
      if (ws.readyState !== 1) this.#closed(ws, 1006, 'connection failed');
    };
  }

  #resubscribe() {
    const since = {};
    for (const [channel, offset] of this.#offsets) since[channel] = offset;
    const message = { type: 'SUBSCRIBE', channels: [...this.#channels] };
    if (this.#offsets.size) Object.assign(message, { since, epoch: this.#last?.epoch });
    this.#send(message);
  }

  /** The message `data` carries, as a plain object, with the client's state brought up to it. */
  #receive(data) {
    let message;
    if (typeof data === 'string') {
      message = JSON.parse(data);
      if (message.delta === true) {
        this.#applyDelta(message);
      } else if (this.#options.delta && (message.type === 'WELCOME' || message.type === 'TELEMETRY')) {
        this.#base = rawData(data);
      }
    } else {
      message = this.#decoders.decode(new Uint8Array(data));
    }
    delete message.delta;
    if (message.type === 'WELCOME' || message.type === 'TELEMETRY') {
      this.#last = { seq: message.seq, epoch: message.epoch };
    } else if (message.type === 'UPDATE' && message.offset !== undefined) {
      this.#offsets.set(message.channel, message.offset);
    } else if (message.type === 'SUBSCRIBED') {
      // Refused (§9.2), other than for being held already: asking again would be refused again.
      for (const { channel, reason } of message.rejected ?? []) {
        if (reason !== 'already subscribed') this.#channels.delete(channel);
      }
    } else if (message.type === 'COMMAND_RESULT' && this.#pending.has(message.id)) {
      this.#pending.get(message.id).resolve(message);
      this.#pending.delete(message.id);
    }
    return message;
  }

  /** Turns a delta TELEMETRY into a whole one; throws when it does not follow or apply. */
  #applyDelta(message) {
    const last = this.#last;
    if (!this.#base || !last || last.epoch !== message.epoch || last.seq + 1 !== message.seq) {
      throw new Error(`bff: delta for seq ${message.seq} does not follow seq ${last?.seq}`);
    }
    const bytes = this.#decoders.applyDelta(this.#base, encoder.encode(message.data), { verifyChecksum: true });
    this.#base = Uint8Array.from(bytes);
    message.data = JSON.parse(decoder.decode(this.#base));
  }

  #failPending(code, reason) {
    for (const [id, { reject, action }] of this.#pending) {
      reject(new Error(`bff: connection closed (${code} ${reason}) before the result of ${action} ${id}`));
    }
    this.#pending.clear();
  }

  #closed(ws, code, reason) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#failPending(code, reason);
    if (!this.#running || code === TOKEN_REVOKED) {
      this.#running = false;
      this.#setStatus({ state: 'closed', code, reason });
      return;
    }
    const min = this.#options.minDelayMs ?? 1000;
    const max = this.#options.maxDelayMs ?? 30000;
    const ceiling = Math.min(max, min * 2 ** this.#attempt++);
    const delayMs = ceiling / 2 + (this.#options.random ?? Math.random)() * (ceiling / 2);
    // The timer first: a `close()` from the status listener stops it.
    this.#timer = setTimeout(() => {
      this.#setStatus({ state: 'connecting', attempt: this.#attempt });
      this.#open();
    }, delayMs);
    this.#setStatus({ state: 'reconnecting', code, reason, attempt: this.#attempt, delayMs });
  }
}
