// The packets bff sends: `import type { Packet } from './packet';`
// Generated from the daemon's Rust types; do not edit (see src/contract.rs).

export type Packet = { type: PacketType, 
/**
 * Grows by one per snapshot; a gap is the number of packets missed.
 */
seq: number, data: Telemetry, };

export type PacketType = "WELCOME" | "TELEMETRY";

export type Telemetry = { timestamp: Timestamp, agents: { [key in string]: AgentStats }, models: { [key in string]: ModelStats }, sources: Sources, status: Status, market: Market, portfolio: Portfolio, signal: Signal, governance: Governance, 
/**
 * Oldest first; the packet keeps the newest `packet.max_logs`.
 */
logs: Array<LogEntry>, } & { [section: string]: unknown };

export type Status = "ACTIVE" | "HALT" | "INITIALIZING";

export type Market = { symbol: string | null, price: number | null, alpha: number | null, regime: string | null, velocity: number | null, acceleration: number | null, };

export type Portfolio = { nav: number | null, cash: number | null, daily_pnl: number | null, max_drawdown: number | null, };

export type Signal = { side: Side | null, confidence: number | null, reasoning: string | null, };

export type Side = "BUY" | "SELL" | "FLAT";

export type Governance = { approved_size: number | null, };

export type LogEntry = { level: Level, message: string, timestamp: Timestamp | null, };

export type Level = "INFO" | "WARNING" | "ERROR";

export type AgentStats = { latency_ms: number | null, success_rate: number | null, invocations: number | null, };

export type ModelStats = { latency_ms: number | null, invocations: number | null, cache_hit_rate: number | null, };

export type Sources = { state: SourceHealth, agents: SourceHealth, models: SourceHealth, };

export type SourceHealth = { 
/**
 * The last fetch succeeded.
 */
ok: boolean, 
/**
 * When the last good answer arrived.
 */
updated: Timestamp | null, 
/**
 * Milliseconds between `updated` and the packet's poll time.
 */
age_ms: number | null, 
/**
 * Why the last fetch failed, readable by a person.
 */
error: string | null, };

export type Timestamp = string;
