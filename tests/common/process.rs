//! The `bff` binary as a child process: started with the given arguments, its log read line by
//! line, its bound address taken from the log, signalled, waited for, and killed if the test ends
//! before it stops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The daemon binary this package builds.
pub const BIN: &str = env!("CARGO_BIN_EXE_bff");

/// A child process, killed and reaped when the test ends however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `bff`, with its log (stdout) read into a channel by a thread of its own so the
/// process never blocks on a full pipe.
pub struct BffProcess {
    child: KillOnDrop,
    addr: SocketAddr,
    /// Lines from stdout not read yet; `None` once [`BffProcess::close_output`] closed it.
    lines: Option<Receiver<String>>,
    reader: Option<JoinHandle<()>>,
    /// Kept unread (the daemon writes to it only when it fails) and shown when a wait fails.
    stderr: Option<ChildStderr>,
    /// Every stdout line read so far.
    log: Vec<String>,
}

impl BffProcess {
    /// `bff --demo --listen 127.0.0.1:0` with `args` after those.
    pub fn demo(args: &[&str]) -> Self {
        let mut all = vec!["--demo", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start(&all, &[])
    }

    /// `bff ARGS` with `RUST_LOG=info` and then `env` set; returns once it logged `Listening`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_until(args, env, "Listening")
    }

    /// [`BffProcess::start`], ready once a log line contains `ready`; that line's `addr` is the
    /// address.
    pub fn start_until(args: &[&str], env: &[(&str, &str)], ready: &str) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = KillOnDrop(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}")),
        );
        let stdout = child.0.stdout.take().unwrap();
        let stderr = child.0.stderr.take();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    // Nobody reads any more: returning closes the pipe.
                    return;
                }
            }
        });
        let mut process = Self {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines: Some(lines),
            reader: Some(reader),
            stderr,
            log: Vec::new(),
        };
        let line = process.line_containing(ready);
        process.addr = addr_in(&line)
            .unwrap_or_else(|| process.fail(&format!("no addr in the {ready:?} line {line:?}")));
        process
    }

    /// The address the process logged when it was ready.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every stdout line read so far, oldest first.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// The next stdout line, within [`PATIENCE`].
    pub fn next_line(&mut self) -> String {
        self.next_line_by(Instant::now() + PATIENCE, "the next log line")
    }

    /// The next stdout line containing `needle`, within [`PATIENCE`] however many lines come
    /// before it.
    pub fn line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let what = format!("a log line containing {needle:?}");
        loop {
            let line = self.next_line_by(deadline, &what);
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn next_line_by(&mut self, deadline: Instant, what: &str) -> String {
        let Some(lines) = &self.lines else {
            panic!("waiting for {what}, but the output was closed by the test");
        };
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                self.log.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("timed out waiting for {what}")),
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(&format!("the output ended before {what}"))
            }
        }
    }

    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGHUP`, …) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.0.id()).unwrap();
        // SAFETY: kill(2) takes plain integers; the pid is our own child's, not reaped yet, so it
        // names no other process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// How the process exited, once it does, within [`PATIENCE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail("timed out waiting for the process to exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the read ends of stdout and stderr, as `bff | head` does once `head` is done:
    /// every line the process writes from now on meets a closed pipe.
    pub fn close_output(&mut self) {
        drop(self.stderr.take());
        drop(self.lines.take());
        // The reader closes stdout when it finds nobody listening, on the next line it reads.
        let reader = self.reader.take().expect("the output is closed once");
        let deadline = Instant::now() + PATIENCE;
        while !reader.is_finished() {
            if Instant::now() >= deadline {
                self.fail("timed out waiting for one more log line to close stdout on");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        reader.join().unwrap();
    }

    /// Fails the test with `what`, the process's stdout so far and its stderr (after killing
    /// it, so both are complete).
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.0.kill();
        let exit = match self.child.0.wait() {
            Ok(status) if status.signal() == Some(libc::SIGKILL) => {
                "it was still running (now killed)".to_owned()
            }
            Ok(status) => format!("it had exited with {status}"),
            Err(e) => format!("waiting for it failed: {e}"),
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Some(lines) = &self.lines {
            self.log.extend(lines.try_iter());
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        panic!(
            "{BIN}: {what}; {exit}.\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            self.log.join("\n")
        );
    }
}

/// The `addr` field of a log line, plain (`addr=127.0.0.1:3000`) or JSON (`"addr":"…"`).
fn addr_in(line: &str) -> Option<SocketAddr> {
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
        return event["addr"].as_str()?.parse().ok();
    }
    let (_, rest) = line.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}
