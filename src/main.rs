//! The `pushd` command: `serve` runs the daemon, `check` validates offline,
//! everything else is a client of the control socket.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pushd::control::client::Client;
use pushd::control::protocol::*;
use pushd::control::render;
use pushd::daemon;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pushd",
    version,
    about = "Push-messaging daemon for chatbot operators"
)]
struct Cli {
    /// Config file (default: ./config.toml, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket (default: the one named in the config).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's raw JSON reply.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (SIGTERM drains, SIGHUP reloads).
    Serve {
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Uptime, config and script generation, pushes with progress and ETA.
    Status,
    /// Reload config.toml and the scripts now.
    Reload,
    /// Members: import from CSV or JSON lines.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Who changed what, when.
    Audit(AuditArgs),
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Upsert members by (channel, channel_user_id) from a CSV (with header) or JSON-lines file.
    Import {
        file: PathBuf,
        /// Import the valid rows even if some are invalid.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only this action (e.g. "push" or "reload.scripts").
    #[arg(long)]
    action: Option<String>,
}

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
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Serve { log_format } = cli.command {
        init_logging(log_format);
        let config = daemon::load_config(cli.config.as_deref())?;
        daemon::serve(config).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let socket = socket_path(&cli)?;
    let json = cli.json;
    let request = match &cli.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Status => Request::Status(StatusArgs {}),
        Command::Reload => Request::Reload(ReloadArgs {}),
        Command::Members {
            command: MembersCommand::Import { file, skip_invalid },
        } => {
            let abs = std::fs::canonicalize(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            Request::MembersImport(MembersImportArgs {
                path: Some(abs.display().to_string()),
                data: None,
                skip_invalid: *skip_invalid,
            })
        }
        Command::Audit(a) => Request::AuditList(AuditListArgs {
            limit: Some(a.limit),
            action: a.action.clone(),
        }),
    };
    let mut client = Client::connect(&socket).await?;
    let resp = client.call(&request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(exit_code(&resp));
    }
    if !resp.ok {
        // Some failures carry data worth showing (e.g. the rejected import rows).
        if let (Request::MembersImport(_), Some(_)) = (&request, &resp.data) {
            print!("{}", render::import(&data::<ImportData>(&resp)?));
        }
        let e = resp.error.as_ref();
        bail!(
            "{} ({})",
            e.map(|e| e.message.as_str()).unwrap_or("request failed"),
            e.map(|e| e.code.as_str()).unwrap_or("error")
        );
    }
    let text = match &request {
        Request::Status(_) => render::status(&data(&resp)?),
        Request::Reload(_) => render::reload(&data(&resp)?),
        Request::MembersImport(_) => render::import(&data(&resp)?),
        Request::AuditList(_) => render::audit(&data(&resp)?),
        _ => serde_json::to_string_pretty(&resp.data)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn exit_code(resp: &Response) -> ExitCode {
    if resp.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn data<T: DeserializeOwned>(resp: &Response) -> Result<T> {
    let v = resp.data.clone().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(v).context("the daemon's reply does not match this pushd version")
}

/// `--socket`, else the socket named in the config.
fn socket_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    let config = daemon::load_config(cli.config.as_deref())?;
    Ok(config.socket_path)
}
