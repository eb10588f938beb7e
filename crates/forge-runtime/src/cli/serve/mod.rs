//! `serve`: the model behind an OpenAI-compatible HTTP API —
//! `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /health`. hyper serves connections on a current-thread tokio
//! runtime; the model runs on its own thread ([`engine`]), taking requests
//! in arrival order and sending each its tokens over a channel, so a
//! streamed reply is written event by event as tokens are generated, and a
//! closed channel (the client left) stops the generation.

mod api_error;
mod engine;
mod http;
mod prompt_cache;
mod requests;
mod responses;
mod stop_text;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::chat::stops::stop_ids;
use super::chat_template::open_template;
use super::tokenize::open_tokenizer;
use super::{load, Project, WeightsArg};
use crate::gpu::GpuOptions;
use crate::model::CompiledModel;
use engine::Engine;
use http::{handle, unix_seconds, Server};
use requests::Served;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on: loopback unless another is asked for (0.0.0.0 serves every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Host memory for prompt-cache snapshots, in MiB (least recently used go first).
    #[arg(long, default_value_t = 512)]
    cache_mb: usize,
    /// Largest request body accepted, in KiB.
    #[arg(long, default_value_t = 4096)]
    body_limit_kb: usize,
    #[command(flatten)]
    weights: WeightsArg,
}

/// Slow or idle clients may take this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn serve<M: CompiledModel>(
    project: &Project,
    args: ServeArgs,
    err: &mut dyn Write,
) -> Result<()> {
    let info = M::INFO;
    let tokenizer = Arc::new(open_tokenizer::<M>(project, "serve")?);
    let template = open_template(project, err)?;
    let stops = stop_ids(project.text.eos_ids, &template, &tokenizer);
    let address = resolve(&args.host, args.port)?;
    // Bound before the model loads, so a port in use fails at once.
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;

    let (log, log_lines) = unbounded_channel();
    let (jobs, job_queue) = std::sync::mpsc::channel();
    let (loaded, load_result) = std::sync::mpsc::channel();
    let engine_project = *project;
    let engine_tokenizer = tokenizer.clone();
    let engine_log = log.clone();
    let cache_bytes = args.cache_mb.saturating_mul(1 << 20);
    let weights = args.weights.weights;
    // The model is built on the thread that runs it: GPU handles stay there.
    std::thread::Builder::new()
        .name("inference".into())
        .spawn(
            move || match load::<M>(&engine_project, weights, GpuOptions::default()) {
                Ok(session) => {
                    let _ = loaded.send(Ok(()));
                    Engine::new(session, engine_tokenizer, stops, cache_bytes, engine_log)
                        .run(job_queue);
                }
                Err(e) => {
                    let _ = loaded.send(Err(e));
                }
            },
        )?;
    load_result
        .recv()
        .map_err(|_| anyhow!("the inference thread stopped while loading the model"))??;

    let server = Arc::new(Server {
        served: Served {
            model_id: project.package.to_string(),
            defaults: project.sampling,
            top_candidates: info.top_candidates,
            vocab_size: info.vocab_size,
        },
        tokenizer,
        template,
        bos_id: project.text.bos_id,
        context_length: info.context_length,
        body_limit: args.body_limit_kb.saturating_mul(1024),
        started: unix_seconds(),
        jobs,
        log,
        next_id: AtomicU64::new(1),
    });
    writeln!(
        err,
        "serving {} on http://{address} (OpenAI API under /v1; prompt cache {} MiB)",
        project.package, args.cache_mb
    )?;
    err.flush()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(accept(listener, server, log_lines, err))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let mut addresses = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("--host {host}: not an address this machine can listen on"))?;
    match addresses.next() {
        Some(address) => Ok(address),
        None => bail!("--host {host}: no address"),
    }
}

/// Accepts connections forever, writing the log lines handlers and the engine send.
async fn accept(
    listener: TcpListener,
    server: Arc<Server>,
    mut log_lines: UnboundedReceiver<String>,
    err: &mut dyn Write,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: the next accept may work.
                    Err(e) => {
                        writeln!(err, "accept failed: {e}")?;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(server.clone(), request));
                    // A connection that fails (reset, timed out) concerns only its client.
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(line) = log_lines.recv() => {
                writeln!(err, "{line}")?;
                err.flush()?;
            }
        }
    }
}
