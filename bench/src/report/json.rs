//! The figures as JSON, for scripts (`scripts/bench.sh`, `--json`): every fraction rounded to
//! thousandths, missing figures as `null`, and long lists cut to their first few entries.

use serde_json::{Value, json};

use super::figures::{
    Connect, DaemonFigures, Dist, Figures, Form, LoadGen, Missed, Push, StallRow, Stalls, Steady,
    Tally,
};
use super::r3;

/// The JSON report; `push` only when a publisher ran, `form` only when a form or `--verify`
/// was asked.
pub fn render(f: &Figures) -> Value {
    let mut report = json!({
        "config": f.config,
        "clock": f.clock.label(),
        "timestamps": {"kernel": f.clock.kernel, "fallback": f.clock.fallback},
        "connect": connect(&f.connect),
        "steady": steady(&f.steady),
        "missed": missed(&f.missed),
        "stalled": f.stalls.as_ref().map_or(Value::Null, stalls),
        "daemon": f.daemon.as_ref().map_or(Value::Null, daemon),
        "load_generator": load_generator(&f.load_generator),
        "unfinished_tasks": f.unfinished,
    });
    if let Some(p) = &f.push {
        report["push"] = push(p);
    }
    if let Some(form_figures) = &f.form {
        report["form"] = form(form_figures);
    }
    report
}

fn dist(d: &Option<Dist>) -> Value {
    match d {
        Some(d) => json!({"n": d.n, "p50": r3(d.p50), "p99": r3(d.p99), "max": r3(d.max)}),
        None => Value::Null,
    }
}

/// The `limit` most frequent messages.
fn tally(t: &Tally, limit: usize) -> Value {
    t.iter()
        .take(limit)
        .map(|(what, n)| json!({"count": n, "what": what}))
        .collect()
}

fn connect(c: &Connect) -> Value {
    json!({
        "attempted": c.attempted,
        "not_started": c.not_started,
        "connected": c.connected,
        "connected_at_window_start": c.connected_at_window_start,
        "failed": c.failed,
        "errors": tally(&c.errors, 5),
        "phase_s": r3(c.phase_s),
        "tcp_connect_ms": dist(&c.tcp_ms),
        "welcome_ms": dist(&c.welcome_ms),
        "upgrade_to_welcome_ms": dist(&c.upgrade_to_welcome_ms),
        "welcome_always_first": c.first_frame_not_welcome == 0,
        "first_frame_not_welcome": c.first_frame_not_welcome,
        "extra_welcomes": c.extra_welcomes,
        "other_text_frames": c.other_text_frames,
    })
}

fn steady(s: &Steady) -> Value {
    json!({
        "window_s": r3(s.window_s),
        "normal_clients": s.normal_clients,
        "after_seq": s.after_seq,
        "ticks_counted": s.spread.as_ref().map_or(0, |d| d.n),
        "ticks_incomplete": s.incomplete.len(),
        "incomplete": s.incomplete.iter().take(5).map(|t| json!({"seq": t.seq, "got": t.got, "expected": t.expected})).collect::<Vec<_>>(),
        "fanout_spread_ms": dist(&s.spread),
        "worst_ticks": s.worst.iter().map(|t| json!({"seq": t.seq, "spread_ms": r3(t.spread_ms)})).collect::<Vec<_>>(),
        "staleness_ms": dist(&s.staleness),
        "unparsed_timestamps": s.unparsed_timestamps,
    })
}

fn missed(m: &Missed) -> Value {
    json!({
        "total": m.total,
        "max_per_client": m.max_per_client,
        "clients_with_gaps": m.clients_with_gaps,
        "trailing": m.trailing,
        "duplicates": m.duplicates,
        "max_interval_ms": m.max_interval.as_ref().map(|i| r3(i.ms)),
        "max_interval_at_seq": m.max_interval.as_ref().map(|i| i.before_seq),
        "ended_early": m.ended_early,
        "ended_early_first_s": m.ended_early_first_s.map(r3),
        "ended_early_reasons": tally(&m.ended_early_reasons, 5),
    })
}

fn push(p: &Push) -> Value {
    json!({
        "hz": p.hz,
        "channel": p.channel,
        "published": p.published,
        "no_subscriber": p.no_subscriber,
        "appeared": p.appeared,
        "coalesced": p.coalesced,
        "clients": p.clients,
        "reached_all": p.reached_all,
        "latency_ms": dist(&p.latency_ms),
        "first_client_ms": dist(&p.first_client_ms),
        "push_spread_ms": dist(&p.push_spread_ms),
        "poll_spread_ms": dist(&p.poll_spread_ms),
        "latency_p99_over_poll_spread_p99": p.ratio.map(r3),
        "packets_per_client_per_s": r3(p.packets_per_s),
        "error": p.error,
    })
}

fn form(f: &Form) -> Value {
    let t = &f.tally;
    json!({
        "clients": f.clients,
        "deflate_taken": f.deflate_taken,
        "packets": f.packets,
        "wire_bytes_per_packet": r3(f.wire_bytes_per_packet),
        "delta_packets": f.delta_packets,
        "undecodable_frames": f.undecodable_frames,
        "verify": {
            "clients": f.verifiers,
            "verified": t.verified,
            "mismatched": t.mismatched,
            "undecodable": t.undecodable,
            "unreferenced": t.unreferenced,
            "problems": t.problems,
            "reference_ended_early": f.reference_end,
        },
        "failed": f.failed(),
    })
}

fn stalls(s: &Stalls) -> Value {
    json!({
        "connected": s.connected,
        "cut_by_server_seen": s.cut_seen,
        "closed_when_read_at_end": s.closed_when_read,
        "still_open_at_end": s.still_open,
        "cut_after_welcome_s": dist(&s.cut_after_welcome),
        "cut_after_first_undelivered_s": dist(&s.cut_after_first_undelivered),
        "read_at_end": tally(&s.read_at_end, 5),
        "max_packets_buffered": s.max_buffered.0,
        "max_bytes_buffered": s.max_buffered.1,
        "server_max_send_queue": s.server_max_send_queue,
        "clients": s.clients.iter().take(50).map(stall_row).collect::<Vec<_>>(),
    })
}

fn stall_row(r: &StallRow) -> Value {
    json!({
        "client": r.client,
        "welcome_seq": r.welcome_seq,
        "packets_buffered": r.packets_buffered,
        "bytes_buffered": r.bytes_buffered,
        "last_seq": r.last_seq,
        "first_undelivered_after_s": r.first_undelivered_after_s.map(r3),
        "server_cut_after_s": r.cut_after_s.map(r3),
        "server_state_at_cut": r.state_at_cut,
        "server_max_send_queue": r.max_send_queue,
        "watched": r.watched,
        "read_at_end": r.read_at_end,
    })
}

fn daemon(d: &DaemonFigures) -> Value {
    json!({
        "pid": d.pid,
        "cpu_s_window": r3(d.cpu_s_window),
        "cpu_pct_window": r3(d.cpu_pct_window),
        "kernel_pct_window": r3(d.kernel_pct_window),
        "cpu_s_connect_phase": r3(d.cpu_s_connect_phase),
        "rss_kb_before": d.rss_kb_before,
        "rss_kb_connected": d.rss_kb_connected,
        "rss_kb_end": d.rss_kb_end,
        "rss_kb_after_close": d.rss_kb_after_close,
        "peak_rss_kb": d.peak_rss_kb,
        "kb_per_connection": r3(d.kb_per_connection),
        "threads": d.threads,
    })
}

fn load_generator(g: &LoadGen) -> Value {
    json!({
        "cpu_s_window": r3(g.cpu_s_window),
        "cpu_pct_window": r3(g.cpu_pct_window),
        "cpu_s_connect_phase": r3(g.cpu_s_connect_phase),
        "cpu_s_total": r3(g.cpu_s_total),
        "max_rss_kb": g.max_rss_kb,
        "rss_kb_steady_end": g.rss_kb_steady_end,
    })
}
