//! `--demo`: an embedded engine simulator on a loopback port. It answers the three endpoints over
//! real HTTP in the real engine's loose shapes (naive timestamps, enum-style status words, log
//! strings, raw agent call records, raw model records) with values that move every second, so
//! the daemon polls it exactly as it would poll an engine. It takes the engine's actions too:
//! `halt` really stops its trading until `resume`. And one route of its own, `POST /demo/mood`
//! (`{"mood": "crash"|"bull"|"neutral"|"auto"}`), steers its market into that mood, for checking
//! by eye how a dashboard shows each one.
//!
//! Given a Redis URL, it also publishes what the engine and its trading agents publish there
//! ([`simulation`] makes the messages, [`publish`] sends them): a trade on `market.tick.SPY`
//! [`TICKS_PER_STEP`] times a second, the step's physics, signals and agent updates once a second,
//! and a system event on `halt` and `resume`. The market then moves between steps, and every
//! message says what the HTTP answers say at that moment: a tick's price is the state's price.
//! Without a URL nothing is published and the market moves once a second.
//!
//! This module is the outside of it: the HTTP answers, the market's clock and the wiring to the
//! publisher. The market and engine they answer from are in `simulation`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use publish::{Message, Outbox};
use simulation::{ACCEPTED, DemoMood, Simulation};

mod publish;
mod simulation;

/// How often the simulation takes a step: the engine's own rhythm, which the daemon polls.
const STEP: Duration = Duration::from_secs(1);
/// Trades (and `market.tick.SPY` messages) per step when publishing to Redis: the step's own and
/// the ones between steps.
pub const TICKS_PER_STEP: u32 = 5;

/// Starts the simulator on `addr` (port 0: one the OS picks) and returns the address it bound.
/// With `redis` (a `redis://` URL), it publishes its events there too, connecting in the
/// background and again whenever the connection is lost; a URL that cannot be read is an
/// `InvalidInput` error.
pub async fn start(
    addr: SocketAddr,
    redis: Option<&str>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let outbox = match redis {
        None => None,
        Some(url) => Some(publish::start(url, shutdown.clone()).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cannot publish the demo's events to Redis: {err}"),
            )
        })?),
    };
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let demo = Arc::new(Demo {
        sim: Mutex::new(Simulation::new(fastrand::u64(..))),
        outbox,
    });
    tokio::spawn(run_market(demo.clone(), shutdown.clone()).instrument(info_span!("demo")));
    tokio::spawn(
        async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => { debug!(%err, "demo accept failed"); continue; }
                    },
                };
                let demo = demo.clone();
                let service = service_fn(move |req| answer(req, demo.clone()));
                tokio::spawn(
                    async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(info_span!("demo")),
    );
    Ok(addr)
}

/// The simulation, shared by the market's clock and the HTTP answers, and where its events go
/// when it publishes them.
struct Demo {
    sim: Mutex<Simulation>,
    outbox: Option<Outbox>,
}

impl Demo {
    fn sim(&self) -> std::sync::MutexGuard<'_, Simulation> {
        self.sim.lock().expect("demo lock poisoned")
    }

    /// Hands `messages` to the publisher, if there is one; never waits.
    fn publish(&self, messages: impl IntoIterator<Item = Message>) {
        if let Some(outbox) = &self.outbox {
            messages
                .into_iter()
                .for_each(|message| outbox.send(message));
        }
    }
}

/// The market's clock: a step a second; when publishing, [`TICKS_PER_STEP`] trades a second,
/// the step being one of them, each published with what changed.
async fn run_market(demo: Arc<Demo>, shutdown: CancellationToken) {
    let ticks_per_step = if demo.outbox.is_some() {
        TICKS_PER_STEP
    } else {
        1
    };
    let mut ticks = tokio::time::interval(STEP / ticks_per_step);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for tick in (0..ticks_per_step).cycle() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Made under the lock, each with the time it was made: a message is never older than an
        // HTTP answer that already shows what it says.
        let messages = {
            let mut sim = demo.sim();
            if tick == 0 {
                sim.step();
                match demo.outbox {
                    Some(_) => sim.step_events(Utc::now()),
                    None => Vec::new(),
                }
            } else {
                sim.trade();
                vec![sim.tick_event(Utc::now())]
            }
        };
        demo.publish(messages);
    }
}

async fn answer(
    req: Request<Incoming>,
    demo: Arc<Demo>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == MOOD_PATH {
        return Ok(switch_mood(req, &demo).await);
    }
    let mut sim = demo.sim();
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/api/system/state/current") => sim.state(),
        (&Method::GET, "/api/system/metrics/agents") => sim.agents(),
        (&Method::GET, "/api/system/metrics/models") => sim.models(),
        (&Method::POST, path) if path.starts_with("/api/actions/") => {
            let (reply, event) = sim.act(&path["/api/actions/".len()..]);
            demo.publish(event);
            reply
        }
        _ => {
            let mut response = Response::new(Full::from("not found"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The demo's own route, beside the engine's API: `POST {"mood": …}` steers the market
/// ([`DemoMood`]). Only the demo engine answers it, never the daemon.
const MOOD_PATH: &str = "/demo/mood";
/// The largest body `POST /demo/mood` reads: `{"mood":"neutral"}` with room to spare.
const MOOD_BODY_LIMIT: usize = 1024;

/// `POST /demo/mood`: 200 with `{"mood": …}` once the market is switched; 400 with the reason
/// (naming the accepted words) for a body that is not one of them; 405 for another method.
async fn switch_mood(req: Request<Incoming>, demo: &Demo) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{MOOD_PATH} takes POST only, with {{\"mood\": {ACCEPTED}}}")}),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let body = match Limited::new(req.into_body(), MOOD_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return refuse_mood(&format!(
                "cannot read the body (at most {MOOD_BODY_LIMIT} bytes): {err}"
            ));
        }
    };
    let mood = match serde_json::from_slice::<MoodRequest>(&body) {
        Ok(request) => request.mood,
        Err(err) => return refuse_mood(&err.to_string()),
    };
    demo.sim().set_mood(mood);
    info!(%mood, "Demo market mood set");
    json_response(StatusCode::OK, &json!({ "mood": mood }))
}

/// The body `POST /demo/mood` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoodRequest {
    mood: DemoMood,
}

/// The 400 for a mood that cannot be read: why, and what the body should be.
fn refuse_mood(why: &str) -> Response<Full<Bytes>> {
    debug!(why, "Demo mood refused");
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": format!("the body must be {{\"mood\": {ACCEPTED}}}: {why}")}),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
