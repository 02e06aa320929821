// Types of ./react.js.
import type { MarketStreamOptions, MarketStreamState } from './market-stream.js';

export type { Alert, Mood, Persona, Regime, MarketStreamState, MarketStreamOptions } from './market-stream.js';

/** The market's mood and alerts from `url` while the component is mounted; `null` url: none. */
export declare function useMarketStream(
  url: string | URL | null | undefined,
  options?: Pick<MarketStreamOptions, 'token' | 'WebSocket' | 'minDelayMs' | 'maxDelayMs'>,
): MarketStreamState;
