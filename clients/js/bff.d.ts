// Types for ./bff.js: a client for a bff daemon's stream paths (docs/PROTOCOL.md §2–§13).

/** A packet (§2.1): `data` is whole whatever the encoding (deltas are applied). */
export interface Packet {
  type: 'WELCOME' | 'TELEMETRY';
  seq: number;
  epoch: string;
  data: Record<string, unknown>;
  /** On a WELCOME answering a resume (§11.5). */
  resumed?: boolean;
}

/** A relayed channel message (§9.3). */
export interface Update {
  type: 'UPDATE';
  channel: string;
  offset?: number;
  data: unknown;
}

/** The answer to a command (§10.2). */
export interface CommandResult {
  type: 'COMMAND_RESULT';
  id: string | null;
  action: string;
  ok: boolean;
  status: number | null;
  message: string | null;
  error: string | null;
}

/** REGIME / ALERT (§12) and every other message, as the daemon sent it. */
export interface Message {
  type: string;
  [key: string]: unknown;
}

export type Status =
  | { state: 'connecting'; attempt: number }
  | { state: 'live' }
  | { state: 'reconnecting'; code: number; reason: string; attempt: number; delayMs: number }
  /**
   * After `close()` (1000), a revoked token (4401), or a decoder asked for (`delta`, `format:
   * 'msgpack'`) that could not be imported (1006, `reason` names the package): no more reconnects.
   */
  | { state: 'closed'; code: number; reason: string };

export interface ConnectOptions {
  /** Sent as the `token` subprotocol (§5). */
  token?: string;
  /** Ask for fossil deltas (`?delta=fossil`, §13.2); not with `format: 'msgpack'`. */
  delta?: boolean;
  /** `'msgpack'` asks for binary frames (§13.3). */
  format?: 'json' | 'msgpack';
  /** Relay channels (or patterns) to subscribe to, on connect and on every reconnect. */
  channels?: string[];
  onStatus?: (status: Status) => void;
  /** A frame that could not be read (the client then reconnects to resume). */
  onError?: (error: Error) => void;
  /** Backoff: the first wait's ceiling (default 1000) and the last (default 30000), jittered. */
  minDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  WebSocket?: new (url: string, protocols?: string[]) => WebSocket;
}

export declare class BffClient {
  readonly status: Status;
  on(type: 'WELCOME' | 'TELEMETRY', listener: (message: Packet) => void): () => void;
  on(type: 'UPDATE', listener: (message: Update) => void): () => void;
  on(type: 'COMMAND_RESULT', listener: (message: CommandResult) => void): () => void;
  on(type: string, listener: (message: Message) => void): () => void;
  /** Now and on every reconnect, with its offsets; a channel the daemon refuses is not asked again. */
  subscribe(channel: string): void;
  /** Leaves a channel, now and on every reconnect. */
  unsubscribe(channel: string): void;
  command(action: string, args?: Record<string, unknown>): Promise<CommandResult>;
  close(): void;
}

export declare function connect(url: string | URL, options?: ConnectOptions): BffClient;

/** The raw bytes of a JSON packet frame's `data`, as a delta applies to them (§13.2). */
export declare function rawData(text: string): Uint8Array;
