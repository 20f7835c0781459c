//! The `pushd` command: `serve` runs the daemon, `check` validates offline,
//! everything else is a client of the control socket.

mod cli;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::args::{Cli, Command, ListFormat, LogFormat, PushCommand};
use cli::reply;
use cli::request::build_request;
use pushd::control::client::Client;
use pushd::daemon;
use pushd::protocol::*;
use std::path::PathBuf;
use std::process::ExitCode;

/// A push allocates and frees many small buffers per message on several
/// threads (request bodies, JSON, rows, task state); with the system
/// allocator the dispatch threads spent over a quarter of their time in
/// malloc/free (see README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena (a few busy threads
/// share it through their caches) and dirty pages returned within half a
/// second. Peak RSS of the c=256 WhatsApp push 72–80 MB → 60–66 MB and of
/// the 1M simulator push 54.9 → 50.9 MB, throughput unchanged (core 0.49×,
/// dispatch 0.74× of their baselines); see docs/PERFORMANCE.md.
/// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: ConfPtr =
    ConfPtr(c"narenas:1,tcache_max:4096,dirty_decay_ms:500,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads (immutable, so safe to share).
#[repr(transparent)]
struct ConfPtr(*const std::ffi::c_char);
// SAFETY: it points at a static, never-written C string literal.
unsafe impl Sync for ConfPtr {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pushd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pushd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file, a pipe or journald
    // would keep the escape codes as noise, and JSON lines must stay plain.
    // NO_COLOR (no-color.org) turns it off at a terminal too.
    let colour = matches!(format, LogFormat::Text)
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Serve { log_format } => {
            init_logging(*log_format);
            let config = daemon::load_config(cli.config.as_deref())?;
            daemon::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(cli.config.clone()).await,
        _ => run_client(&cli).await,
    }
}

/// `check`: every problem on stderr, non-zero exit if there is one.
async fn check(config: Option<PathBuf>) -> Result<ExitCode> {
    let problems = tokio::task::spawn_blocking(move || daemon::check(config.as_deref()))
        .await
        .context("check crashed")?;
    if problems.is_empty() {
        println!("ok: config and scripts are valid");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s)", problems.len());
    Ok(ExitCode::FAILURE)
}

/// Every other subcommand: one request to the daemon (or a stream of them),
/// its reply printed.
async fn run_client(cli: &Cli) -> Result<ExitCode> {
    let socket = socket_path(cli)?;
    let request = build_request(&cli.command)?;
    let mut client = Client::connect(&socket).await?;

    if let Command::Export { output, .. } = &cli.command {
        return reply::export(&mut client, &request, output, cli.json).await;
    }
    if let (
        Command::Recipients {
            format: ListFormat::Csv,
            output,
            ..
        },
        Request::PushRecipients(args),
    ) = (&cli.command, &request)
    {
        return reply::recipients_csv(&mut client, args.clone(), output.as_deref()).await;
    }
    if let Command::Push {
        command: PushCommand::Show { follow: true, .. },
    } = &cli.command
    {
        return reply::follow(&mut client, &request).await;
    }

    let resp = client.call(&request).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(if resp.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !resp.ok {
        reply::print_failure_data(&request, &resp)?;
        let e = resp.error.as_ref();
        bail!(
            "{} ({})",
            e.map(|e| e.message.as_str()).unwrap_or("request failed"),
            e.map(|e| e.code.as_str()).unwrap_or("error")
        );
    }
    let text = reply::text(&mut client, &cli.command, &request, &resp).await?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `--socket`, else the socket named in the config.
fn socket_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    let config = daemon::load_config(cli.config.as_deref())?;
    Ok(config.socket_path)
}
