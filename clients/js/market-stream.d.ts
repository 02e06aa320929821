// Types of ./market-stream.js: the messages of docs/PROTOCOL.md §12.6 and the store's state.

/** The regime words the daemon sends, exactly. */
export type Regime = 'crash' | 'bull' | 'neutral';

export declare const REGIMES: readonly Regime[];

/** Who speaks for a mood on a vibe card, and what they say (configurable on the daemon). */
export interface Persona {
  name: string;
  headline: string;
}

/** The announced mood: the fields of a `market_regime` message (§12.4, §12.6). */
export interface Mood {
  regime: Regime;
  label: string;
  persona: Persona;
  /** When the readings first showed this mood (ISO 8601). */
  since: string | null;
  /** The mood it replaced: on a change, not on connect. */
  previous?: Regime;
  /** The packet's `market` (§2.2) that confirmed the change: on a change, not on connect. */
  market?: Record<string, unknown>;
}

/** An alert (§12.3), as an `alert` message carries it. */
export interface Alert {
  level: 'critical' | 'warning' | 'info';
  code: string;
  message: string;
  /** When it was raised (active) or cleared. */
  timestamp: string;
  active: boolean;
}

export interface MarketStreamState {
  /** The announced regime; `null` before the daemon said one. */
  regime: Regime | null;
  /** The whole mood, with its label and persona; `null` before the daemon said one. */
  mood: Mood | null;
  /** The active alerts, oldest first. */
  alerts: readonly Alert[];
  /** Whether the WebSocket is open now. */
  connected: boolean;
  /** Why it is not connected, when it gave up (a revoked token) or could not try; else `null`. */
  error: string | null;
}

export interface MarketStreamOptions {
  /** A bff token (`bff token …`), sent as the `token` subprotocol. */
  token?: string | null;
  /** A WebSocket class where there is no global one (e.g. the `ws` package's). */
  WebSocket?: unknown;
  /** The first wait before reconnecting, in ms (default 1000); doubled each failed try. */
  minDelayMs?: number;
  /** The longest wait before reconnecting, in ms (default 30000). */
  maxDelayMs?: number;
  /** A number in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
  /** `false`: do not connect until `open()` (default: connect at once). */
  connect?: boolean;
}

/** The state before any message. */
export declare function initialState(): MarketStreamState;

export declare class MarketStream {
  constructor(url: string | URL, options?: MarketStreamOptions);
  /** Calls `listener` on every change; returns the unsubscribe function. */
  subscribe: (listener: (state: MarketStreamState) => void) => () => void;
  /** The current state: the same object until something changes. */
  getSnapshot: () => MarketStreamState;
  /** Connects (again, after `close()`). */
  open(): void;
  /** Closes the connection and stops reconnecting. */
  close(): void;
}
