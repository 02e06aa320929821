// What bff sends (and how to subscribe): `import type { ServerMessage, Packet } from './packet';`
// Generated from the daemon's Rust types; do not edit (see src/contract.rs).

export type ServerMessage = Packet | DeltaPacket | UpdateMessage | Subscribed | CommandResult | Pong | RegimeMessage | AlertMessage | MarketRegime | MarketAlert;

export type Packet = { 
/**
 * WELCOME first, then TELEMETRY.
 */
type: PacketType, 
/**
 * Grows by one per snapshot; a gap is the number of packets missed.
 */
seq: number, 
/**
 * The snapshot.
 */
data: Telemetry, 
/**
 * Changes only when the sequence starts again (a restarted daemon, a new cluster
 * sequence): a lower `seq` under another epoch is a new count, not time going back.
 */
epoch: string, 
/**
 * On a WELCOME to a client that asked to resume (`?since=…&epoch=…`): whether the packets
 * it missed follow (`true`), or it starts afresh (`false`). Absent otherwise.
 */
resumed?: boolean, };

export type PacketType = "WELCOME" | "TELEMETRY";

export type DeltaPacket = { 
/**
 * Always TELEMETRY: the WELCOME is a whole [`Packet`].
 */
type: "TELEMETRY", 
/**
 * One more than the packet the delta applies to.
 */
seq: number, 
/**
 * With `delta: true`, the fossil delta that turns the previous packet's `data` (its
 * bytes as they came) into this one's; with `delta: false`, the whole data.
 */
data: DeltaData, 
/**
 * As in every packet.
 */
epoch: string, 
/**
 * Whether `data` is a delta.
 */
delta: boolean, };

export type DeltaData = string | Telemetry;

export type Telemetry = { 
/**
 * The engine's state timestamp when it gave one, else the poll time.
 */
timestamp: Timestamp, 
/**
 * Per-agent performance.
 */
agents: { [key in string]: AgentStats }, 
/**
 * Per-model performance.
 */
models: { [key in string]: ModelStats }, 
/**
 * How fresh each input is.
 */
sources: Sources, 
/**
 * The market's mood as announced (`docs/PROTOCOL.md` §12.4).
 */
mood: MoodNow, 
/**
 * The active alerts, oldest first.
 */
alerts: Array<Alert>, 
/**
 * The trading status.
 */
status: Status, 
/**
 * The market the engine trades.
 */
market: Market, 
/**
 * The engine's book.
 */
portfolio: Portfolio, 
/**
 * The current trading signal.
 */
signal: Signal, 
/**
 * What risk governance allows.
 */
governance: Governance, 
/**
 * Oldest first; the packet keeps the newest `packet.max_logs`.
 */
logs: Array<LogEntry>, } & { [section: string]: unknown };

export type Status = "ACTIVE" | "HALT" | "INITIALIZING";

export type Market = { 
/**
 * The traded symbol (`SPY`).
 */
symbol: string | null, 
/**
 * The last price.
 */
price: number | null, 
/**
 * The tail index of returns: above 2 Gaussian, lower is heavier-tailed.
 */
alpha: number | null, 
/**
 * The engine's name for the regime alpha puts it in (`Gaussian`, `Lévy Stable`, `Critical`).
 */
regime: string | null, 
/**
 * The price's rate of change.
 */
velocity: number | null, 
/**
 * The change of `velocity`.
 */
acceleration: number | null, };

export type Portfolio = { 
/**
 * Net asset value.
 */
nav: number | null, 
/**
 * Cash not in positions.
 */
cash: number | null, 
/**
 * Profit or loss since the day opened.
 */
daily_pnl: number | null, 
/**
 * The deepest fall from a peak, as a fraction (negative).
 */
max_drawdown: number | null, };

export type Signal = { 
/**
 * Which way the engine would trade.
 */
side: Side | null, 
/**
 * How sure it is, 0 to 1 as the engine says it.
 */
confidence: number | null, 
/**
 * Why, in the engine's words.
 */
reasoning: string | null, };

export type Side = "BUY" | "SELL" | "FLAT";

export type Governance = { 
/**
 * The position size risk governance approved, 0 to 0.20.
 */
approved_size: number | null, };

export type LogEntry = { 
/**
 * The severity, folded onto three.
 */
level: Level, 
/**
 * The text, without a leading level word.
 */
message: string, 
/**
 * When the engine logged it, if it said.
 */
timestamp: Timestamp | null, };

export type Level = "INFO" | "WARNING" | "ERROR";

export type AgentStats = { 
/**
 * Mean latency of a call.
 */
latency_ms: number | null, 
/**
 * Share of calls that succeeded, 0 to 1.
 */
success_rate: number | null, 
/**
 * Calls counted.
 */
invocations: number | null, };

export type ModelStats = { 
/**
 * Mean latency of an inference.
 */
latency_ms: number | null, 
/**
 * Inferences counted.
 */
invocations: number | null, 
/**
 * Share of inferences answered from cache, when the engine reports it.
 */
cache_hit_rate: number | null, };

export type Sources = { 
/**
 * The state endpoint.
 */
state: SourceHealth, 
/**
 * The agent-metrics endpoint.
 */
agents: SourceHealth, 
/**
 * The model-metrics endpoint.
 */
models: SourceHealth, 
/**
 * The Redis subscription, present only when `redis.url` is set.
 */
redis?: SourceHealth, };

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

export type UpdateMessage = { 
/**
 * Always `UPDATE` (`update` on bridge paths, which carry no `offset`).
 */
type: "UPDATE", 
/**
 * The channel it was published on.
 */
channel: string, 
/**
 * Grows by one per message on that channel: a gap is a loss.
 */
offset: number, 
/**
 * The message as published; text that is not JSON comes as `{"raw": "<text>"}`.
 */
data: unknown, };

export type Subscribed = { 
/**
 * `SUBSCRIBED` or `UNSUBSCRIBED`, lowercase when the request was.
 */
type: "SUBSCRIBED" | "UNSUBSCRIBED" | "subscribed" | "unsubscribed", 
/**
 * The channels now subscribed (or left) by this request.
 */
channels: Array<string>, 
/**
 * Those refused, each with its reason.
 */
rejected: Array<Rejected>, 
/**
 * Only when the request named offsets (`since`): for each such channel the request
 * subscribed, whether every message after its offset follows (`false`: the epoch differs,
 * or the kept messages no longer reach back, so only the live ones come).
 */
resumed?: { [key in string]: boolean }, };

export type Rejected = { 
/**
 * The channel (or pattern) as asked.
 */
channel: string, 
/**
 * Why not, readable by a person.
 */
reason: string, };

export type CommandResult = { 
/**
 * Always `COMMAND_RESULT`.
 */
type: "COMMAND_RESULT", 
/**
 * The command's `id`, as sent; `null` when it had none.
 */
id: string | null, 
/**
 * The action, as the daemon names it (or as sent, when it is unknown).
 */
action: string, 
/**
 * Whether the engine did it.
 */
ok: boolean, 
/**
 * The engine's HTTP status; `null` when the command was not sent or got no answer.
 */
status: number | null, 
/**
 * The engine's `message`, if it gave one.
 */
message: string | null, 
/**
 * Why it did not happen, readable by a person; `null` when `ok`.
 */
error: string | null, };

export type Pong = { 
/**
 * `PONG` or `pong`.
 */
type: "PONG" | "pong", };

export type RegimeMessage = { type: "REGIME", data: MoodChange, };

export type AlertMessage = { type: "ALERT", data: Alert, };

export type MarketRegime = { type: "market_regime", 
/**
 * The mood it replaces; absent on connect.
 */
previous?: Regime, 
/**
 * The market of the packet that confirmed it; absent on connect.
 */
market?: Market, 
/**
 * `crash`, `bull` or `neutral`.
 */
regime: Regime, 
/**
 * The configured label (`Crash/Panic`).
 */
label: string, 
/**
 * The configured persona and headline.
 */
persona: Persona, 
/**
 * When the readings first showed this mood (its announcement follows `min_dwell_ms`
 * later); for the first mood, the first packet's time.
 */
since: Timestamp, };

export type MarketAlert = { type: "alert", 
/**
 * How loud.
 */
level: AlertLevel, 
/**
 * Its name for programs (`ENGINE_HALTED`, a rule's code).
 */
code: string, 
/**
 * What a person reads.
 */
message: string, 
/**
 * When it was raised (`active` true) or cleared (`active` false).
 */
timestamp: Timestamp, 
/**
 * Whether the condition holds from `timestamp` on.
 */
active: boolean, };

export type MoodNow = { 
/**
 * `crash`, `bull` or `neutral`.
 */
regime: Regime, 
/**
 * The configured label (`Crash/Panic`).
 */
label: string, 
/**
 * The configured persona and headline.
 */
persona: Persona, 
/**
 * When the readings first showed this mood (its announcement follows `min_dwell_ms`
 * later); for the first mood, the first packet's time.
 */
since: Timestamp, };

export type MoodChange = { 
/**
 * The mood it replaces.
 */
previous: Regime, 
/**
 * The market of the packet that confirmed it, so the message explains itself.
 */
market: Market, 
/**
 * `crash`, `bull` or `neutral`.
 */
regime: Regime, 
/**
 * The configured label (`Crash/Panic`).
 */
label: string, 
/**
 * The configured persona and headline.
 */
persona: Persona, 
/**
 * When the readings first showed this mood (its announcement follows `min_dwell_ms`
 * later); for the first mood, the first packet's time.
 */
since: Timestamp, };

export type Persona = { 
/**
 * `Big Pickle`, `MiniMax`, …
 */
name: string, 
/**
 * `SELL EVERYTHING`, `TO THE MOON`, …
 */
headline: string, };

export type Regime = "crash" | "bull" | "neutral";

export type Alert = { 
/**
 * How loud.
 */
level: AlertLevel, 
/**
 * Its name for programs (`ENGINE_HALTED`, a rule's code).
 */
code: string, 
/**
 * What a person reads.
 */
message: string, 
/**
 * When it was raised (`active` true) or cleared (`active` false).
 */
timestamp: Timestamp, 
/**
 * Whether the condition holds from `timestamp` on.
 */
active: boolean, };

export type AlertLevel = "critical" | "warning" | "info";

export type SubscribeRequest = { type: "SUBSCRIBE" | "subscribe", 
/**
 * Channels, or patterns exactly as the relay list writes them.
 */
channels: Array<string>, 
/**
 * The last `offset` got of each channel: the kept messages after it come first.
 */
since?: { [key in string]: number }, 
/**
 * The epoch those offsets belong to.
 */
epoch?: string, };

export type ResumeQuery = { 
/**
 * The `seq` of the last packet received.
 */
since: number, 
/**
 * That packet's `epoch`.
 */
epoch: string, };
