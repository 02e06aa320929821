//! The loop: one epoll over the listening socket, the tick timer, the signals and every client.
//! A client's descriptor is all that is kept of it once upgraded ([`Slot::Open`]); while its
//! upgrade request comes in, that request's bytes ([`Slot::Handshake`]).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

use crate::Cli;
use crate::os::{self, Io};
use crate::wire::{self, Frames};

/// Room for one upgrade request, held only until it is answered (a browser's, cookies
/// included, fits; the load generator's is about 200 bytes).
const REQUEST_BYTES: usize = 2048;

/// Events taken from epoll per wait.
const EVENTS: usize = 1024;

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A close frame without a status, the answer to a client's close.
const CLOSE: [u8; 2] = [0x88, 0x00];

/// What the floor knows about a descriptor.
enum Slot {
    Free,
    /// Connected, upgrade request not yet complete.
    Handshake(Box<Request>),
    /// Upgraded: gets every tick.
    Open,
}

struct Request {
    buf: [u8; REQUEST_BYTES],
    len: usize,
}

struct Floor {
    epoll: OwnedFd,
    listener: OwnedFd,
    timer: OwnedFd,
    signals: OwnedFd,
    /// By descriptor number.
    slots: Vec<Slot>,
    seq: u64,
    packet_bytes: usize,
    frames: Frames,
}

/// Binds, prints the address, and serves until SIGTERM or SIGINT.
pub fn serve(cli: &Cli) -> io::Result<()> {
    if let Err(err) = os::raise_nofile() {
        eprintln!("bff-floor: warning: cannot raise the open-file limit: {err}");
    }
    // Blocked before anything else, so a signal from here on ends the loop cleanly.
    let signals = os::signals()?;
    let (listener, addr) = os::listen(cli.listen)
        .map_err(|err| io::Error::new(err.kind(), format!("--listen {}: {err}", cli.listen)))?;
    let timer = os::timer(Duration::from_secs(1) / cli.hz)?;
    let epoll = os::epoll()?;
    for fd in [&listener, &timer, &signals] {
        os::watch(epoll.as_raw_fd(), fd.as_raw_fd())?;
    }
    let packet_bytes = cli.packet_bytes as usize;
    let mut floor = Floor {
        epoll,
        listener,
        timer,
        signals,
        slots: Vec::new(),
        seq: 0,
        packet_bytes,
        frames: Frames::new(0, SystemTime::now(), packet_bytes),
    };
    let mut stdout = io::stdout();
    writeln!(stdout, "Listening addr={addr}")?;
    stdout.flush()?;
    floor.run()
}

impl Floor {
    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let n = os::wait(self.epoll.as_raw_fd(), &mut events)?;
            for event in &events[..n] {
                let fd = event.u64 as RawFd;
                if fd == self.signals.as_raw_fd() {
                    return Ok(());
                } else if fd == self.timer.as_raw_fd() {
                    os::drain(fd);
                    self.tick();
                } else if fd == self.listener.as_raw_fd() {
                    self.accept();
                } else {
                    match self.slots.get(fd as usize) {
                        Some(Slot::Handshake(_)) => self.handshake(fd),
                        Some(Slot::Open) => self.discard(fd),
                        // Closed earlier in this batch of events.
                        Some(Slot::Free) | None => {}
                    }
                }
            }
        }
    }

    /// The next packet, built and framed once, then one `send` to each client.
    fn tick(&mut self) {
        self.seq += 1;
        self.frames = Frames::new(self.seq, SystemTime::now(), self.packet_bytes);
        let len = self.frames.telemetry.len();
        for fd in 0..self.slots.len() {
            if matches!(self.slots[fd], Slot::Open) {
                let fd = fd as RawFd;
                match os::send(fd, &self.frames.telemetry) {
                    Io::Done(n) if n == len => {}
                    // Would block, failed, or sent in part: nothing is kept to finish later.
                    _ => self.close(fd),
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match os::accept(self.listener.as_raw_fd()) {
                Ok(Some(fd)) => {
                    if os::watch(self.epoll.as_raw_fd(), fd).is_err() {
                        os::close(fd);
                        continue;
                    }
                    let i = fd as usize;
                    if i >= self.slots.len() {
                        self.slots.resize_with(i + 1, || Slot::Free);
                    }
                    self.slots[i] = Slot::Handshake(Box::new(Request {
                        buf: [0; REQUEST_BYTES],
                        len: 0,
                    }));
                }
                Ok(None) => return,
                Err(err) => {
                    eprintln!("bff-floor: accept failed, retrying shortly: {err}");
                    std::thread::sleep(ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Reads the upgrade request up to its blank line, then answers with the 101 and the
    /// current WELCOME in one `sendmsg`. A request without a key, larger than
    /// [`REQUEST_BYTES`], or cut short is closed.
    fn handshake(&mut self, fd: RawFd) {
        let Some(Slot::Handshake(request)) = self.slots.get_mut(fd as usize) else {
            return;
        };
        let head = loop {
            let room = &mut request.buf[request.len..];
            if room.is_empty() {
                break None;
            }
            match os::recv(fd, room) {
                Io::Done(0) | Io::Failed => break None,
                Io::Done(n) => {
                    request.len += n;
                    let got = &request.buf[..request.len];
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(&request.buf[..end + 2]);
                    }
                }
                Io::WouldBlock => return,
            }
        };
        let Some(response) = head
            .and_then(wire::websocket_key)
            .map(wire::upgrade_response)
        else {
            return self.close(fd);
        };
        let welcome = &self.frames.welcome;
        match os::send2(fd, &response, welcome) {
            Io::Done(n) if n == response.len() + welcome.len() => {
                self.slots[fd as usize] = Slot::Open;
            }
            _ => self.close(fd),
        }
    }

    /// Reads and drops what an upgraded client sent; closes on end of stream, or when a read
    /// starts with a close frame (answered first, so the client's close is a clean one).
    fn discard(&mut self, fd: RawFd) {
        let mut buf = [0u8; 512];
        loop {
            match os::recv(fd, &mut buf) {
                Io::Done(0) | Io::Failed => return self.close(fd),
                Io::Done(_) if buf[0] == CLOSE[0] => {
                    os::send(fd, &CLOSE);
                    return self.close(fd);
                }
                Io::Done(_) => {}
                Io::WouldBlock => return,
            }
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(slot) = self.slots.get_mut(fd as usize) {
            *slot = Slot::Free;
        }
        os::close(fd);
    }
}
