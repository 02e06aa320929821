// `useMarketStream`: the market's mood and alerts from a bff daemon in a React component, built on
// MarketStream (./market-stream.js) with `useSyncExternalStore`. React is a peer dependency.

import { useEffect, useMemo, useSyncExternalStore } from 'react';
import { MarketStream, initialState } from './market-stream.js';

/**
 * Connects to `url` (a bff market-stream path) while the component is mounted, reconnecting
 * after a drop; returns `{regime, mood, alerts, connected, error}` and renders again on each
 * change. A new `url` or `options.token` opens a new connection; other options are read once.
 */
export function useMarketStream(url, options = {}) {
  const { token = null, WebSocket, minDelayMs, maxDelayMs } = options;
  const target = url ? String(url) : null;
  const stream = useMemo(
    () => (target ? new MarketStream(target, { token, WebSocket, minDelayMs, maxDelayMs, connect: false }) : null),
    // The delays are read once per connection, as documented.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [target, token, WebSocket],
  );
  // Opened by the effect, not the render: React may render and throw away, never commit.
  useEffect(() => {
    if (!stream) return undefined;
    stream.open();
    return () => stream.close();
  }, [stream]);
  return useSyncExternalStore(
    stream ? stream.subscribe : noSubscribe,
    stream ? stream.getSnapshot : initialState,
    initialState,
  );
}

function noSubscribe() {
  return () => {};
}
