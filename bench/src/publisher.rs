//! The optional publisher (`--redis`, `--publish-hz`): during the steady window it publishes
//! engine ticks on Redis ([`CHANNEL`]) for the daemon to merge and push, each with a price no
//! other packet carries ([`price`]), and records when each one was written.
//!
//! It speaks RESP over one plain TCP connection: [`command`] writes a command as an array of bulk
//! strings, [`reply`] reads the one-line replies `PING` and `PUBLISH` get. The publish times are
//! taken just before each write, on the clock of the clients' kernel receive stamps
//! ([`crate::net::now_ns`], CLOCK_REALTIME), so [`crate::report`] can subtract one from the
//! other. The clients pick the publishes out of their packets with [`key`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until, timeout};

use crate::net::now_ns;

/// Where the ticks go: the demo's active symbol, so each one shows as `data.market.price`.
pub const CHANNEL: &str = "market.tick.SPY";
const SYMBOL: &str = "SPY";

/// Publish prices start here, far from any price the demo engine walks through (about 450).
const BASE_PRICE: f64 = 1000.0;

/// How long Redis may take to accept the connection or answer one command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The price of publish `n` (1, 2, …): 1000.001, 1000.002, …
pub fn price(n: u32) -> f64 {
    BASE_PRICE + f64::from(n) / 1000.0
}

/// Which publish a packet's price came from, if it is one of [`price`]'s; a tolerance far below
/// the step between two publishes absorbs any rounding in the daemon's parse and print.
pub fn key(price: f64) -> Option<u32> {
    if !price.is_finite() || price < BASE_PRICE {
        return None;
    }
    let n = ((price - BASE_PRICE) * 1000.0).round();
    if n > f64::from(u32::MAX) {
        return None;
    }
    let n = n as u32;
    ((self::price(n) - price).abs() < 1e-6).then_some(n)
}

/// The tick of publish `n`, as the engine writes it, stamped `ns` (ns since the epoch).
pub fn tick(n: u32, ns: i64) -> String {
    format!(
        r#"{{"symbol":"{SYMBOL}","price":{},"timestamp":"{}"}}"#,
        price(n),
        rfc3339_us(ns)
    )
}

/// `ns` since the epoch as RFC 3339 in UTC with microseconds: `2026-12-02T18:00:00.123456Z`.
fn rfc3339_us(ns: i64) -> String {
    let (secs, sub_ns) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::civil::date(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3_600,
        sod / 60 % 60,
        sod % 60,
        sub_ns / 1_000
    )
}

/// A RESP command: an array of bulk strings (`*3\r\n$7\r\nPUBLISH\r\n…`).
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A one-line RESP reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `:n`: for `PUBLISH`, how many subscribers Redis handed the message to.
    Integer(i64),
    /// `-ERR …`.
    Error(String),
}

/// The reply at the start of `buf` and the bytes it took; `None` until its line is complete,
/// `Err` for anything but a one-line reply.
pub fn reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
    let reply = match buf[0] {
        b'+' => Reply::Simple(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Integer(
            line.parse()
                .map_err(|_| format!("a bad integer reply: {line:?}"))?,
        ),
        other => return Err(format!("an unexpected reply type {:?}", other as char)),
    };
    Ok(Some((reply, end + 2)))
}

/// One connection to Redis, one command at a time.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` and checks that a Redis answers there.
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("no connection to {addr} within {REPLY_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(64),
        };
        match conn.call(&command(&[b"PING"])).await? {
            Reply::Simple(pong) if pong == "PONG" => Ok(conn),
            other => Err(format!("{addr} answered PING with {other:?}")),
        }
    }

    /// Writes `cmd` and reads its reply.
    async fn call(&mut self, cmd: &[u8]) -> Result<Reply, String> {
        self.stream
            .write_all(cmd)
            .await
            .map_err(|e| format!("write: {e}"))?;
        timeout(REPLY_TIMEOUT, self.read_reply())
            .await
            .map_err(|_| format!("no reply within {REPLY_TIMEOUT:?}"))?
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            if let Some((reply, used)) = reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 256];
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// One tick published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its number: its price is [`price`]`(n)`.
    pub n: u32,
    /// Just before it was written, ns since the epoch (CLOCK_REALTIME).
    pub at: i64,
    /// Subscribers Redis handed it to (`PUBLISH`'s reply): 0 means the daemon was not listening.
    pub receivers: i64,
}

/// What the publisher did.
#[derive(Debug, Clone, PartialEq)]
pub struct Publishes {
    pub hz: u32,
    pub channel: String,
    /// In the order published.
    pub sent: Vec<Published>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Publishes `hz` ticks a second from now until `until` (a late one is skipped, not bunched);
/// stops at the first error.
pub async fn run(mut conn: Conn, hz: u32, until: Instant) -> Publishes {
    let mut out = Publishes {
        hz,
        channel: CHANNEL.into(),
        sent: Vec::new(),
        error: None,
    };
    let mut ticks = interval(Duration::from_secs(1) / hz.max(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut n = 0u32;
    loop {
        tokio::select! {
            _ = sleep_until(until) => break,
            _ = ticks.tick() => {}
        }
        if Instant::now() >= until {
            break;
        }
        n += 1;
        let payload = tick(n, now_ns());
        let cmd = command(&[b"PUBLISH", CHANNEL.as_bytes(), payload.as_bytes()]);
        let at = now_ns();
        match conn.call(&cmd).await {
            Ok(Reply::Integer(receivers)) => out.sent.push(Published { n, at, receivers }),
            Ok(other) => {
                out.error = Some(format!("PUBLISH answered {other:?}"));
                break;
            }
            Err(why) => {
                out.error = Some(why);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};

    #[test]
    fn publish_is_an_array_of_bulk_strings() {
        let cmd = command(&[b"PUBLISH", b"market.tick.SPY", br#"{"price":1000.001}"#]);
        assert_eq!(
            cmd,
            b"*3\r\n$7\r\nPUBLISH\r\n$15\r\nmarket.tick.SPY\r\n$18\r\n{\"price\":1000.001}\r\n"
        );
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        // Lengths are bytes, not characters.
        assert_eq!(
            command(&[b"x", "é".as_bytes()]),
            b"*2\r\n$1\r\nx\r\n$2\r\n\xc3\xa9\r\n"
        );
    }

    #[test]
    fn one_line_replies_are_read_whole_or_not_at_all() {
        assert_eq!(reply(b":1\r\n"), Ok(Some((Reply::Integer(1), 4))));
        assert_eq!(reply(b":0\r\n:2\r\n"), Ok(Some((Reply::Integer(0), 4))));
        assert_eq!(
            reply(b"+PONG\r\n"),
            Ok(Some((Reply::Simple("PONG".into()), 7)))
        );
        assert_eq!(
            reply(b"-ERR unknown command\r\n"),
            Ok(Some((Reply::Error("ERR unknown command".into()), 22)))
        );
        assert_eq!(reply(b":12"), Ok(None));
        assert_eq!(reply(b":12\r"), Ok(None));
        assert_eq!(reply(b""), Ok(None));
        assert!(reply(b":x\r\n").is_err());
        assert!(reply(b"$5\r\nhello\r\n").is_err());
    }

    #[test]
    fn every_publish_has_its_own_price_and_is_found_by_it() {
        assert_eq!(price(1), 1000.001);
        assert_eq!(price(250), 1000.25);
        assert_eq!(price(1000), 1001.0);
        for n in [0, 1, 2, 299, 300, 1000, 18_000, 1_000_000] {
            assert_eq!(key(price(n)), Some(n), "{n}");
            // As the daemon prints it and a reader parses it back.
            let printed: f64 = serde_json::to_string(&price(n)).unwrap().parse().unwrap();
            assert_eq!(key(printed), Some(n), "{n}");
        }
        for other in [450.32, 999.999, 1000.0005, f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(key(other), None, "{other}");
        }
    }

    #[test]
    fn ticks_carry_the_price_and_a_utc_timestamp_in_microseconds() {
        let ns = 1_796_234_400_123_456_789; // 2026-12-02T18:00:00.123456789Z
        assert_eq!(
            tick(7, ns),
            r#"{"symbol":"SPY","price":1000.007,"timestamp":"2026-12-02T18:00:00.123456Z"}"#
        );
        for ns in [
            0,
            951_782_400_000_001_000,   // 2000-02-29
            1_709_251_199_999_999_999, // the last ns of 2024-02-29
            ns,
        ] {
            let want =
                DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Micros, true);
            assert_eq!(rfc3339_us(ns), want, "{ns}");
        }
    }
}
