//! A real `redis-server` per test, on a free port of 127.0.0.1, with nothing saved to disk; stopped,
//! killed, restarted on the same port and paused (`SIGSTOP`) on demand to make faults, and talked
//! to through a small synchronous RESP client over a plain `TcpStream`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;
use super::process::KillOnDrop;

/// The server's program, looked up on `PATH`.
pub const SERVER: &str = "redis-server";

/// How long one command may take to be written or answered before [`RedisServer::command`]
/// fails the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`RedisServer::wait_until`] and the start-up wait look again.
const POLL: Duration = Duration::from_millis(20);

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nfoo`, or `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n…`, or `None` for `*-1`.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer, or a panic naming what came instead.
    pub fn integer(&self) -> i64 {
        match self {
            Resp::Integer(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The bytes of a non-null bulk string, or a panic naming what came instead.
    pub fn bulk(&self) -> &[u8] {
        match self {
            Resp::Bulk(Some(bytes)) => bytes,
            other => panic!("expected a bulk string reply, got {}", other.brief()),
        }
    }

    /// The items of a non-null array, or a panic naming what came instead.
    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(items)) => items,
            other => panic!("expected an array reply, got {}", other.brief()),
        }
    }

    /// A bulk string as UTF-8 text, or a panic.
    pub fn text(&self) -> String {
        String::from_utf8(self.bulk().to_vec()).expect("the bulk string is UTF-8")
    }

    /// `Debug`, with long bulk strings shortened so a failure message stays readable.
    fn brief(&self) -> String {
        match self {
            Resp::Bulk(Some(bytes)) if bytes.len() > 200 => format!(
                "Bulk({} bytes starting {:?})",
                bytes.len(),
                String::from_utf8_lossy(&bytes[..80])
            ),
            other => format!("{other:?}"),
        }
    }
}

/// `args` as a RESP array of bulk strings, ready to write in one go.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let size = args.iter().map(|arg| arg.len() + 32).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole reply (arrays recursively). A connection closed before or inside a reply is
/// `UnexpectedEof`; a read timeout is `WouldBlock` or `TimedOut`, as the platform reports it.
pub fn read_reply(reader: &mut impl BufRead) -> io::Result<Resp> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Ok(Resp::Simple(rest.to_owned())),
        "-" => Ok(Resp::Error(rest.to_owned())),
        ":" => Ok(Resp::Integer(number(rest)?)),
        "$" => {
            let Some(len) = length(rest)? else {
                return Ok(Resp::Bulk(None));
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            if !bytes.ends_with(b"\r\n") {
                return Err(invalid(format!(
                    "a bulk string of {len} bytes without CRLF"
                )));
            }
            bytes.truncate(len);
            Ok(Resp::Bulk(Some(bytes)))
        }
        "*" => {
            let Some(len) = length(rest)? else {
                return Ok(Resp::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<_>>()?;
            Ok(Resp::Array(Some(items)))
        }
        _ => Err(invalid(format!("unknown reply type in {line:?}"))),
    }
}

/// One CRLF-terminated line, without the CRLF.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err(invalid(format!(
            "a reply line cut short or without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| invalid(e.to_string()))
}

fn number(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| invalid(format!("{text:?} is not an integer")))
}

/// A bulk string's or an array's length; `None` for -1 (null).
fn length(text: &str) -> io::Result<Option<usize>> {
    match number(text)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| invalid(format!("length {n}"))),
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A port of 127.0.0.1 nobody listens on right now (the kernel's choice, released at once).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A `redis-server` of this test's own, killed and reaped when the test ends however it ends.
/// Its working directory (`$CARGO_TARGET_TMPDIR/redis-PORT`) holds only its log,
/// `redis.log`, shown when it fails to start; it is removed on drop unless the test failed.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: KillOnDrop,
    /// False once the process was stopped or killed and reaped, until a restart.
    running: bool,
}

impl RedisServer {
    /// A new server on a free port, answering `PING`. `None` when `redis-server` is not on
    /// `PATH` (the test then prints `SKIPPED: …`; under CI it fails instead).
    pub fn start() -> Option<Self> {
        if !super::tool_available(on_path(SERVER), SERVER, "apt-get install redis-server") {
            return None;
        }
        // Another process may take the port between our probe and the server's bind: the server
        // then exits at once, and a new port is tried.
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            let port = free_port();
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let log = File::create(dir.join("redis.log")).unwrap();
            let child = spawn(port, &dir, log);
            let mut server = Self {
                port,
                dir,
                child,
                running: true,
            };
            match server.wait_ready(deadline) {
                Ok(()) => return Some(server),
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start within {PATIENCE:?}: {last}");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process id of the current (or, after a stop or kill, the last) server process.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `SIGTERM`, then waits for the process to exit (a paused server is resumed so it can).
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.signal(libc::SIGCONT);
        self.reap("exit after SIGTERM");
    }

    /// `SIGKILL`, then waits for the process to be gone. Clients see their connections reset
    /// or closed, and new connections are refused.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.reap("die of SIGKILL");
    }

    /// Starts the server again on the same port after [`stop`](Self::stop) or
    /// [`kill`](Self::kill), and waits until it answers `PING`. Empty: nothing was saved.
    pub fn restart(&mut self) {
        assert!(!self.running, "restart() needs stop() or kill() first");
        // The old connections may linger in TIME_WAIT; redis binds with SO_REUSEADDR, so this
        // should not stop it, but a server that exits at once is retried until PATIENCE is up.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.dir.join("redis.log"))
                .unwrap();
            self.child = spawn(self.port, &self.dir, log);
            self.running = true;
            match self.wait_ready(deadline) {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => panic!(
                    "redis-server did not restart on port {} within {PATIENCE:?}: {why}",
                    self.port
                ),
                Err(_) => {}
            }
        }
    }

    /// `SIGSTOP`: the process stays, its port still accepts connections (the kernel queues
    /// them), but nothing is answered until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// `SIGCONT`, after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// A new connection with [`IO_TIMEOUT`] for reads and writes.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to redis on {}: {e}", self.addr()));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Sends `args` on a new connection and reads one reply, each within [`IO_TIMEOUT`]; fails
    /// the test on any I/O error (a Redis error reply is returned, as [`Resp::Error`]).
    pub fn command(&self, args: &[&[u8]]) -> Resp {
        self.try_command(args, IO_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "redis {:?} on port {}: {e}",
                String::from_utf8_lossy(args.first().copied().unwrap_or_default()),
                self.port
            )
        })
    }

    /// [`command`](Self::command) with this timeout for connecting, writing and reading, and
    /// the I/O error returned rather than failing the test.
    pub fn try_command(&self, args: &[&[u8]], timeout: Duration) -> io::Result<Resp> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(&encode_command(args))?;
        read_reply(&mut BufReader::new(stream))
    }

    /// `PUBLISH channel payload`: how many subscribers received it.
    pub fn publish(&self, channel: &str, payload: impl AsRef<[u8]>) -> i64 {
        self.command(&[b"PUBLISH", channel.as_bytes(), payload.as_ref()])
            .integer()
    }

    /// `CLIENT KILL TYPE pubsub`: every subscribed connection is closed by the server; how many
    /// were.
    pub fn client_kill_pubsub(&self) -> i64 {
        self.command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
            .integer()
    }

    /// `PUBSUB NUMPAT`: how many pattern subscriptions (`PSUBSCRIBE`) exist.
    pub fn pubsub_numpat(&self) -> i64 {
        self.command(&[b"PUBSUB", b"NUMPAT"]).integer()
    }

    /// `PUBSUB CHANNELS pattern`: the channels (not patterns) with a subscriber, sorted.
    pub fn pubsub_channels(&self, pattern: &str) -> Vec<String> {
        let mut channels: Vec<String> = self
            .command(&[b"PUBSUB", b"CHANNELS", pattern.as_bytes()])
            .array()
            .iter()
            .map(Resp::text)
            .collect();
        channels.sort();
        channels
    }

    /// `CLIENT LIST`: one line per connection (this command's own included).
    pub fn client_list(&self) -> String {
        self.command(&[b"CLIENT", b"LIST"]).text()
    }

    /// Polls `condition` every 20 ms until it holds; fails the test with `what` after
    /// [`PATIENCE`].
    pub fn wait_until(&self, what: &str, condition: impl Fn(&RedisServer) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` to the running server process.
    fn signal(&self, signal: libc::c_int) {
        assert!(
            self.running,
            "the redis-server on port {} is not running",
            self.port
        );
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) takes plain integers; the pid is our own child's, not reaped yet
        // (`running`), so it names no other process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Waits (within [`PATIENCE`]) for the process to exit and reaps it.
    fn reap(&mut self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.child.0.try_wait().unwrap().is_some() {
                self.running = false;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (pid {}) did not {what} within {PATIENCE:?}",
                self.pid()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the server answers `PING` with `PONG`. If the process exits first, or the
    /// deadline passes, it is reaped and why is returned, with its log.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        let ping = encode_command(&[b"PING"]);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                self.running = false;
                return Err(format!(
                    "it exited with {status} on port {}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let _ = self.child.0.kill();
                let _ = self.child.0.wait();
                self.running = false;
                return Err(format!(
                    "no PONG on port {}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            let answer = TcpStream::connect_timeout(&self.addr(), remaining).and_then(|stream| {
                stream.set_read_timeout(Some(remaining.min(IO_TIMEOUT)))?;
                stream.set_write_timeout(Some(remaining.min(IO_TIMEOUT)))?;
                (&stream).write_all(&ping)?;
                read_reply(&mut BufReader::new(stream))
            });
            if answer.is_ok_and(|reply| reply == Resp::Simple("PONG".into())) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Dead and reaped before its directory goes (the `KillOnDrop` would do it only after).
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `redis-server` on `port` of 127.0.0.1 only, in the foreground, saving nothing, its output
/// appended to `log`.
fn spawn(port: u16, dir: &Path, log: File) -> KillOnDrop {
    let err = log.try_clone().unwrap();
    let child = Command::new(SERVER)
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "no"])
        .args(["--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {SERVER}: {e}"));
    KillOnDrop(child)
}

/// One command on a new connection to the server at `addr`, from a thread that holds no
/// `RedisServer` (a blocking task of an async test).
pub fn command_at(addr: SocketAddr, args: &[&[u8]]) -> Resp {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(&encode_command(args)).unwrap();
    read_reply(&mut BufReader::new(stream)).unwrap()
}

/// `PUBLISH channel payload` to the server at `addr`: how many subscribers got it.
pub fn publish_to(addr: SocketAddr, channel: &str, payload: &[u8]) -> i64 {
    command_at(addr, &[b"PUBLISH", channel.as_bytes(), payload]).integer()
}

/// Publishes every payload on `channel`, pipelined on one connection (as fast as Redis takes
/// them), and reads every reply.
pub fn publish_many(addr: SocketAddr, channel: &str, payloads: &[Vec<u8>]) {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    for payload in payloads {
        out.extend(encode_command(&[b"PUBLISH", channel.as_bytes(), payload]));
    }
    stream.write_all(&out).unwrap();
    let mut reader = BufReader::new(stream);
    for _ in payloads {
        read_reply(&mut reader).unwrap().integer();
    }
}
