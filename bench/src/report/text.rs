//! The figures as a table for people, one section per phase of the run, as `bff-load` prints it
//! at the end.

use std::fmt::{self, Write as _};

use serde_json::Value;

use super::figures::{
    Connect, DaemonFigures, Dist, Figures, Form, LoadGen, Missed, Push, Stalls, Steady,
};
use super::r3;

/// The table, ruled off above and below.
pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    table(&mut out, f).expect("writing to a String");
    out
}

fn table(w: &mut String, f: &Figures) -> fmt::Result {
    let line = "-".repeat(96);
    writeln!(w, "{line}")?;
    header(w, f)?;
    writeln!(w, "{line}")?;
    connect(w, &f.connect, &f.config["clients"])?;
    writeln!(w, "{line}")?;
    steady(w, &f.steady)?;
    missed(w, &f.missed)?;
    if let Some(p) = &f.push {
        writeln!(w, "{line}")?;
        push(w, p)?;
    }
    if let Some(s) = &f.stalls {
        writeln!(w, "{line}")?;
        stalls(w, s)?;
    }
    if let Some(form_figures) = &f.form {
        writeln!(w, "{line}")?;
        form(w, form_figures, &f.config)?;
    }
    writeln!(w, "{line}")?;
    match &f.daemon {
        Some(d) => daemon(w, d, f.steady.window_s)?,
        None => writeln!(w, "DAEMON    (no --daemon-pid)")?,
    }
    load_generator(w, &f.load_generator)?;
    if f.unfinished > 0 {
        writeln!(
            w,
            "  {} client tasks did not finish at teardown; their data is missing",
            f.unfinished
        )?;
    }
    writeln!(w, "{line}")
}

fn dist_line(w: &mut String, label: &str, d: &Option<Dist>) -> fmt::Result {
    match d {
        Some(d) => writeln!(
            w,
            "  {label:<30} p50 {:>9.2}   p99 {:>9.2}   max {:>9.2}   (n={})",
            d.p50, d.p99, d.max, d.n
        ),
        None => writeln!(w, "  {label:<30} (no data)"),
    }
}

fn header(w: &mut String, f: &Figures) -> fmt::Result {
    let cfg = &f.config;
    writeln!(
        w,
        "bff-load  {}  clients {}  stalled {}  rate {}  sources {}  threads {}",
        cfg["url"].as_str().unwrap_or(""),
        cfg["clients"],
        cfg["stalled"],
        if cfg["connect_rate"] == 0 {
            "storm".to_string()
        } else {
            format!("{}/s", cfg["connect_rate"])
        },
        cfg["source_ips"],
        cfg["threads"],
    )?;
    writeln!(
        w,
        "receive clock: {} ({} kernel, {} fallback)",
        f.clock.label(),
        f.clock.kernel,
        f.clock.fallback
    )
}

/// `clients` is the number asked for on the command line.
fn connect(w: &mut String, c: &Connect, clients: &Value) -> fmt::Result {
    writeln!(
        w,
        "CONNECT   connected {} / {}   failed {}   not started {}   phase {:.2}s",
        c.connected, clients, c.failed, c.not_started, c.phase_s
    )?;
    dist_line(w, "TCP connect (ms)", &c.tcp_ms)?;
    dist_line(w, "connect → WELCOME (ms)", &c.welcome_ms)?;
    dist_line(
        w,
        "upgrade request → WELCOME (ms)",
        &c.upgrade_to_welcome_ms,
    )?;
    writeln!(
        w,
        "  WELCOME always first: {}   (first frame not WELCOME: {}, later WELCOMEs: {}, other text: {})",
        if c.first_frame_not_welcome == 0 {
            "yes"
        } else {
            "NO"
        },
        c.first_frame_not_welcome,
        c.extra_welcomes,
        c.other_text_frames
    )?;
    for (what, n) in c.errors.iter().take(5) {
        writeln!(w, "  error ×{n}: {what}")?;
    }
    Ok(())
}

fn steady(w: &mut String, s: &Steady) -> fmt::Result {
    writeln!(
        w,
        "STEADY    window {:.1}s   normal clients {}   ticks after seq {}: {} complete, {} incomplete",
        s.window_s,
        s.normal_clients,
        s.after_seq,
        s.spread.as_ref().map_or(0, |d| d.n),
        s.incomplete.len()
    )?;
    dist_line(w, "fan-out spread (ms)", &s.spread)?;
    if !s.worst.is_empty() {
        let list: Vec<String> = s
            .worst
            .iter()
            .map(|t| format!("seq {}: {:.2}", t.seq, t.spread_ms))
            .collect();
        writeln!(w, "  widest ticks: {}", list.join(", "))?;
    }
    for t in s.incomplete.iter().take(3) {
        writeln!(
            w,
            "  incomplete: seq {} reached {} of {}",
            t.seq, t.got, t.expected
        )?;
    }
    dist_line(w, "staleness (ms)", &s.staleness)?;
    if s.unparsed_timestamps > 0 {
        writeln!(
            w,
            "  timestamps that did not parse: {}",
            s.unparsed_timestamps
        )?;
    }
    Ok(())
}

fn missed(w: &mut String, m: &Missed) -> fmt::Result {
    writeln!(
        w,
        "MISSED    total {} (of which at the end {})   max/client {}   clients with gaps {}   duplicates {}",
        m.total, m.trailing, m.max_per_client, m.clients_with_gaps, m.duplicates
    )?;
    writeln!(
        w,
        "  largest interval between packets: {}",
        m.max_interval.as_ref().map_or("n/a".into(), |i| format!(
            "{:.1} ms (before seq {})",
            i.ms, i.before_seq
        ))
    )?;
    writeln!(
        w,
        "  normal clients ended before the run did: {}{}",
        m.ended_early,
        m.ended_early_first_s.map_or(String::new(), |s| format!(
            " (first {s:.1}s into the window)"
        ))
    )?;
    for (what, n) in m.ended_early_reasons.iter().take(5) {
        writeln!(w, "    ×{n}: {what}")?;
    }
    Ok(())
}

/// The ratio shows the JSON's number, rounded to thousandths before it is printed.
fn push(w: &mut String, p: &Push) -> fmt::Result {
    writeln!(
        w,
        "PUSH      {} Hz on {}   published {}   appeared {}   coalesced {}   no subscriber {}",
        p.hz, p.channel, p.published, p.appeared, p.coalesced, p.no_subscriber
    )?;
    writeln!(
        w,
        "  reached all {} clients held to the end: {} of the {} that appeared",
        p.clients, p.reached_all, p.appeared
    )?;
    dist_line(w, "publish → client (ms)", &p.latency_ms)?;
    dist_line(w, "publish → first client (ms)", &p.first_client_ms)?;
    dist_line(w, "push fan-out spread (ms)", &p.push_spread_ms)?;
    dist_line(w, "poll fan-out spread (ms)", &p.poll_spread_ms)?;
    writeln!(
        w,
        "  push latency p99 / poll fan-out p99: {}   packets per client per second: {:.2}",
        p.ratio.map_or("n/a".into(), |r| format!("{:.2}", r3(r))),
        r3(p.packets_per_s)
    )?;
    if let Some(why) = &p.error {
        writeln!(w, "  publisher stopped early: {why}")?;
    }
    Ok(())
}

/// What was asked comes from the command line's echo in `config`.
fn form(w: &mut String, f: &Form, config: &Value) -> fmt::Result {
    let mut asked = vec![format!(
        "format {}",
        config["format"].as_str().unwrap_or("json")
    )];
    if config["deflate"] == true {
        asked.push(format!(
            "deflate (taken by {} of {} clients)",
            f.deflate_taken, f.clients
        ));
    }
    if config["delta"] == true {
        asked.push(format!(
            "delta ({} of {} packets)",
            f.delta_packets, f.packets
        ));
    }
    writeln!(w, "FORM      {}", asked.join("   "))?;
    writeln!(
        w,
        "  on the wire: {:.1} bytes per client per packet, frame header included ({} packets)",
        r3(f.wire_bytes_per_packet),
        f.packets
    )?;
    if f.undecodable_frames > 0 {
        writeln!(
            w,
            "  compressed frames that did not inflate: {}",
            f.undecodable_frames
        )?;
    }
    let t = &f.tally;
    writeln!(
        w,
        "VERIFY    {} clients: {} packets verified, {} mismatched, {} did not decode, {} without a reference packet{}",
        f.verifiers,
        t.verified,
        t.mismatched,
        t.undecodable,
        t.unreferenced,
        if f.failed() { "   FAILED" } else { "" }
    )?;
    for problem in &t.problems {
        writeln!(w, "  {problem}")?;
    }
    if let Some(why) = &f.reference_end {
        writeln!(w, "  the reference connection ended before the run: {why}")?;
    }
    Ok(())
}

fn stalls(w: &mut String, s: &Stalls) -> fmt::Result {
    writeln!(
        w,
        "STALLED   {} connected   cut by the server (sock_diag) {}   closed when read at the end {}   still open {}",
        s.connected, s.cut_seen, s.closed_when_read, s.still_open
    )?;
    dist_line(w, "cut after WELCOME (s)", &s.cut_after_welcome)?;
    dist_line(
        w,
        "cut after first undelivered (s)",
        &s.cut_after_first_undelivered,
    )?;
    writeln!(
        w,
        "  read at the end: up to {} packets / {} bytes still on their way; server send queue peak {} bytes",
        s.max_buffered.0,
        s.max_buffered.1,
        s.server_max_send_queue
            .map_or("n/a".into(), |q| q.to_string())
    )?;
    for (what, n) in s.read_at_end.iter().take(5) {
        writeln!(w, "  read at end ×{n}: {what}")?;
    }
    Ok(())
}

/// The daemon's line shows the JSON's numbers, rounded to thousandths before they are printed.
fn daemon(w: &mut String, d: &DaemonFigures, window_s: f64) -> fmt::Result {
    writeln!(
        w,
        "DAEMON    pid {}   CPU {:.2}s over {:.1}s = {:.1}% of a core (kernel {:.1}%)   (connect phase {:.2}s)   threads {}",
        d.pid,
        r3(d.cpu_s_window),
        window_s,
        r3(d.cpu_pct_window),
        r3(d.kernel_pct_window),
        r3(d.cpu_s_connect_phase),
        d.threads,
    )?;
    writeln!(
        w,
        "  RSS before {} KB   connected {} KB   end {} KB   peak {} KB   after close {}   → {:.1} KB per connection",
        d.rss_kb_before,
        d.rss_kb_connected,
        d.rss_kb_end,
        d.peak_rss_kb,
        d.rss_kb_after_close
            .map_or("n/a".into(), |kb| format!("{kb} KB")),
        r3(d.kb_per_connection),
    )
}

fn load_generator(w: &mut String, g: &LoadGen) -> fmt::Result {
    writeln!(
        w,
        "LOADGEN   CPU {:.2}s over the window = {:.1}% of a core   (connect phase {:.2}s, total {:.2}s)   RSS {} KB, peak {} KB",
        g.cpu_s_window,
        g.cpu_pct_window,
        g.cpu_s_connect_phase,
        g.cpu_s_total,
        g.rss_kb_steady_end,
        g.max_rss_kb
    )
}
