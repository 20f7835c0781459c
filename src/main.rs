//! The `pushd` command: `serve` runs the daemon, `check` validates offline,
//! everything else is a client of the control socket.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pushd::analytics::render as report_render;
use pushd::control::channel_cli::ChannelCommand;
use pushd::control::client::Client;
use pushd::control::render;
use pushd::daemon;
use pushd::protocol::*;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A push allocates and frees many small buffers per message on several
/// threads (request bodies, JSON, rows, task state); with the system
/// allocator the dispatch threads spent over a quarter of their time in
/// malloc/free (docs/PERFORMANCE.md, "The previous round").
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (SIGTERM drains, SIGHUP reloads).
    Serve {
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Validate config and scripts without a daemon; non-zero exit on any problem.
    Check,
    /// Uptime, config and script generation, pushes with progress and ETA.
    Status,
    /// Reload config.toml and the scripts now.
    Reload,
    /// Manage pushes.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Audiences: list, show, preview (nothing sent), save from a push.
    Audience {
        #[command(subcommand)]
        command: AudienceCommand,
    },
    /// Key indicators of a push (Sent Success/Fail, Read & Interacted, ...).
    Report {
        push: String,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Failed recipients grouped by error class and code.
    Failures {
        push: String,
        /// Sample recipients per group.
        #[arg(long, default_value_t = 5)]
        samples: u32,
    },
    /// Detailed report: one CSV row per recipient.
    Export {
        push: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// A static audience of a push's failed recipients, to push again.
    RetryAudience {
        push: String,
        #[arg(long)]
        name: String,
        /// Only failures worth retrying as they are.
        #[arg(long, value_parser = ["transient"])]
        only: Option<String>,
    },
    /// A push's recipients with their timeline, filtered and paged.
    Recipients {
        push: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Recipients per page (table, json).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// csv lists every matching recipient (all pages).
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Channels: check credentials, send a test message, set up webhooks.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Members: import from CSV or JSON lines.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Who changed what, when.
    Audit(AuditArgs),
    /// A consistent copy of the live database, written by the daemon while
    /// pushes run (restore: stop pushd, copy it into place, start).
    Backup {
        /// The copy to write (relative to this directory).
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// The message log: sends and inbound webhook events, newest first.
    Events {
        #[arg(long)]
        push: Option<String>,
        /// Member id or channel:channel_user_id.
        #[arg(long)]
        member: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The web panel: one-time login links, ending sessions.
    Panel {
        #[command(subcommand)]
        command: PanelCommand,
    },
}

#[derive(Subcommand)]
enum PanelCommand {
    /// Print a one-time login URL for the web panel (admin unless --viewer).
    Login {
        /// A read-only session: every action answers 403.
        #[arg(long)]
        viewer: bool,
        /// How long the link stays usable (default 15m).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
    },
    /// End every panel session and void every unused login link.
    LogoutAll,
}

// (Parsed once per process: the size of its largest variant costs nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum PushCommand {
    /// Create a push (starts now unless --at).
    Create {
        #[arg(long)]
        audience: String,
        #[arg(long)]
        template: String,
        /// Unique name (default: audience + timestamp).
        #[arg(long)]
        name: Option<String>,
        /// "now" or an RFC 3339 time.
        #[arg(long)]
        at: Option<String>,
        /// Messages per minute for this push (the global rate still caps it).
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long, requires = "batch_every")]
        batch_size: Option<u32>,
        /// e.g. "1h".
        #[arg(long, requires = "batch_size")]
        batch_every: Option<String>,
        /// Send window start, HH:MM in each member's timezone.
        #[arg(long, requires = "window_to")]
        window_from: Option<String>,
        #[arg(long, requires = "window_from")]
        window_to: Option<String>,
        /// "bypass": [policy] frequency caps and quiet hours do not apply
        /// (transactional messages; audited).
        #[arg(long)]
        policy: Option<String>,
        /// A/B test: the share of the audience sent first ("20%"); the
        /// template must have variants.
        #[arg(long, requires = "test_wait")]
        test_share: Option<String>,
        /// How long after the test share is sent the winner is chosen ("2h").
        #[arg(long, requires = "test_share")]
        test_wait: Option<String>,
        /// read (default), interacted or clicked.
        #[arg(long, requires = "test_share")]
        test_metric: Option<String>,
        /// auto (default) or manual (`pushd push pick-winner`).
        #[arg(long, requires = "test_share")]
        winner: Option<String>,
        /// A control group sent nothing ("5%").
        #[arg(long)]
        holdout: Option<String>,
    },
    /// Choose the winner of an A/B test (a manual test, or early).
    PickWinner {
        push: String,
        variant: String,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        push: String,
        /// Draw a live progress bar until the push finishes.
        #[arg(long)]
        follow: bool,
    },
    Pause {
        push: String,
    },
    Resume {
        push: String,
    },
    Cancel {
        push: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Table,
    Json,
    Csv,
}

/// Which recipients of a push (`recipients`, `audience from-push`).
#[derive(Args)]
struct FilterArgs {
    /// read_and_interacted, read_only, interacted_only, not_read_or_interacted,
    /// sent_fail, skipped, cancelled, clicked (a tracked link).
    #[arg(long)]
    outcome: Option<String>,
    /// The channel instance they were sent through.
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    locale: Option<String>,
    #[arg(long)]
    error_class: Option<String>,
    #[arg(long)]
    error_code: Option<String>,
    /// The A/B variant they were assigned (`holdout` for the control group).
    #[arg(long)]
    variant: Option<String>,
}

#[derive(Subcommand)]
enum AudienceCommand {
    /// Every audience by name: the scripts' (definition, file:line, size)
    /// and the saved ones (lineage, members).
    List {
        /// Continue after this name (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One audience: its definition or lineage, its exact size now and
    /// its first subscribed members.
    Show {
        name: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Size and sample rendered messages; nothing is sent.
    Preview {
        name: String,
        #[arg(long, default_value_t = 5)]
        limit: u32,
        #[arg(long)]
        template: Option<String>,
    },
    /// A saved audience of a push's recipients with an outcome (and filters),
    /// to push again to; members who unsubscribed since are left out.
    FromPush {
        push: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        name: String,
    },
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
    /// Only this actor: a uid, `daemon`, or a panel session (`panel` for all).
    #[arg(long)]
    actor: Option<String>,
    /// Entries older than this id (the `next` of the previous page, in --json).
    #[arg(long)]
    before: Option<i64>,
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
            return Ok(ExitCode::SUCCESS);
        }
        Command::Check => {
            let path = cli.config.clone();
            let problems = tokio::task::spawn_blocking(move || daemon::check(path.as_deref()))
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
            return Ok(ExitCode::FAILURE);
        }
        _ => {}
    }
    let socket = socket_path(&cli)?;
    let request = build_request(&cli.command)?;
    let mut client = Client::connect(&socket).await?;

    if let Command::Export { output, .. } = &cli.command {
        return export(&mut client, &request, output, cli.json).await;
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
        return recipients_csv(&mut client, args.clone(), output.as_deref()).await;
    }
    if let Command::Push {
        command: PushCommand::Show { follow: true, .. },
    } = &cli.command
    {
        return follow(&mut client, &request).await;
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
        print_failure_data(&request, &resp)?;
        let e = resp.error.as_ref();
        bail!(
            "{} ({})",
            e.map(|e| e.message.as_str()).unwrap_or("request failed"),
            e.map(|e| e.code.as_str()).unwrap_or("error")
        );
    }
    let text = match (&cli.command, &request) {
        (_, Request::Status(_)) => render::status(&data(&resp)?),
        (_, Request::Reload(_)) => render::reload(&data(&resp)?),
        (_, Request::MembersImport(_)) => render::import(&data(&resp)?),
        (_, Request::AuditList(_)) => render::audit(&data(&resp)?),
        (_, Request::PushCreate(_)) => render::push_created(&data(&resp)?),
        (_, Request::PushList(_)) => render::pushes(&data::<PushListData>(&resp)?.pushes),
        (
            _,
            Request::PushShow(_)
            | Request::PushPause(_)
            | Request::PushPickWinner(_)
            | Request::PushResume(_)
            | Request::PushCancel(_),
        ) => render::push_detail(&data::<PushShowData>(&resp)?.push),
        (Command::Report { format, output, .. }, Request::PushReport(a)) => {
            let report: ReportData = data(&resp)?;
            let text = match format {
                ReportFormat::Table => report_render::text(&report),
                ReportFormat::Json => serde_json::to_string_pretty(&resp.data)? + "\n",
                ReportFormat::Csv => report_render::csv(&report),
                ReportFormat::Html => {
                    let f = client
                        .call(&Request::PushFailures(PushFailuresArgs {
                            push: a.push.clone(),
                            samples: Some(5),
                        }))
                        .await?;
                    let failures: FailuresData = data(&f)?;
                    report_render::html(&report, &failures.groups)
                }
            };
            write_or_return(output.as_deref(), text)?
        }
        (_, Request::PushFailures(_)) => render::failures(&data(&resp)?),
        (_, Request::AudiencePreview(_)) => render::preview(&data(&resp)?),
        (_, Request::AudienceList(_)) => render::audiences(&data(&resp)?),
        (_, Request::AudienceShow(_)) => render::audience(&data(&resp)?),
        (_, Request::AudienceRetry(_) | Request::AudienceFromPush(_)) => {
            render::retry_audience(&data(&resp)?)
        }
        (Command::Recipients { format, output, .. }, Request::PushRecipients(_)) => {
            let text = match format {
                ListFormat::Json => serde_json::to_string_pretty(&resp.data)? + "\n",
                _ => render::recipients(&data(&resp)?),
            };
            write_or_return(output.as_deref(), text)?
        }
        (_, Request::EventsList(_)) => render::events(&data(&resp)?),
        (_, Request::PanelLogin(_)) => {
            let login: PanelLoginData = data(&resp)?;
            eprintln!(
                "one-time {} login link, valid until {}:",
                login.role, login.expires_at
            );
            format!("{}\n", login.url)
        }
        (_, Request::PanelLogoutAll(_)) => {
            let out: PanelLogoutAllData = data(&resp)?;
            format!(
                "ended {} panel session(s); unused login links are void\n",
                out.sessions_ended
            )
        }
        (_, Request::ChannelTest(_)) => render::channel_test(&data(&resp)?),
        (_, Request::ChannelWebhook(_)) => render::channel_webhook(&data(&resp)?),
        (_, Request::StoreBackup(_)) => render::backup(&data(&resp)?),
        _ => serde_json::to_string_pretty(&resp.data)? + "\n",
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// What some failures carry: the rejected import rows, a channel test's or
/// webhook's report (the platform's answer and what to do).
fn print_failure_data(request: &Request, resp: &Response) -> Result<()> {
    if resp.data.is_none() {
        return Ok(());
    }
    match request {
        Request::MembersImport(_) => print!("{}", render::import(&data::<ImportData>(resp)?)),
        Request::ChannelTest(_) => print!("{}", render::channel_test(&data(resp)?)),
        Request::ChannelWebhook(_) => print!("{}", render::channel_webhook(&data(resp)?)),
        _ => {}
    }
    Ok(())
}

fn build_request(command: &Command) -> Result<Request> {
    Ok(match command {
        Command::Serve { .. } | Command::Check => bail!("not a client command"),
        Command::Status => Request::Status(StatusArgs {}),
        Command::Reload => Request::Reload(ReloadArgs {}),
        Command::Push { command } => match command {
            PushCommand::Create {
                audience,
                template,
                name,
                at,
                rate,
                batch_size,
                batch_every,
                window_from,
                window_to,
                policy,
                test_share,
                test_wait,
                test_metric,
                winner,
                holdout,
            } => Request::PushCreate(PushCreateArgs {
                audience: audience.clone(),
                template: template.clone(),
                name: name.clone(),
                at: at.clone(),
                rate_per_minute: *rate,
                batch_size: *batch_size,
                batch_every: batch_every.clone(),
                window_from: window_from.clone(),
                window_to: window_to.clone(),
                policy: policy.clone(),
                test_share: test_share.clone(),
                test_wait: test_wait.clone(),
                test_metric: test_metric.clone(),
                winner: winner.clone(),
                holdout: holdout.clone(),
            }),
            PushCommand::PickWinner { push, variant } => {
                Request::PushPickWinner(PushPickWinnerArgs {
                    push: push.clone(),
                    variant: variant.clone(),
                })
            }
            PushCommand::List { status, limit } => Request::PushList(PushListArgs {
                status: status.clone(),
                limit: Some(*limit),
            }),
            PushCommand::Show { push, .. } => Request::PushShow(PushRef { push: push.clone() }),
            PushCommand::Pause { push } => Request::PushPause(PushRef { push: push.clone() }),
            PushCommand::Resume { push } => Request::PushResume(PushRef { push: push.clone() }),
            PushCommand::Cancel { push } => Request::PushCancel(PushRef { push: push.clone() }),
        },
        Command::Audience {
            command:
                AudienceCommand::Preview {
                    name,
                    limit,
                    template,
                },
        } => Request::AudiencePreview(AudiencePreviewArgs {
            name: name.clone(),
            limit: Some(*limit),
            template: template.clone(),
        }),
        Command::Audience {
            command: AudienceCommand::List { after, limit },
        } => Request::AudienceList(AudienceListArgs {
            after: after.clone(),
            limit: Some(*limit),
        }),
        Command::Audience {
            command: AudienceCommand::Show { name, limit },
        } => Request::AudienceShow(AudienceShowArgs {
            name: name.clone(),
            limit: Some(*limit),
        }),
        Command::Audience {
            command: AudienceCommand::FromPush { push, filter, name },
        } => Request::AudienceFromPush(AudienceFromPushArgs {
            push: push.clone(),
            name: name.clone(),
            outcome: filter.outcome.clone(),
            channel: filter.channel.clone(),
            locale: filter.locale.clone(),
            error_class: filter.error_class.clone(),
            error_code: filter.error_code.clone(),
            variant: filter.variant.clone(),
        }),
        Command::Recipients {
            push,
            filter,
            limit,
            after,
            format,
            ..
        } => Request::PushRecipients(PushRecipientsArgs {
            push: push.clone(),
            outcome: filter.outcome.clone(),
            channel: filter.channel.clone(),
            locale: filter.locale.clone(),
            error_class: filter.error_class.clone(),
            error_code: filter.error_code.clone(),
            variant: filter.variant.clone(),
            limit: Some(if *format == ListFormat::Csv {
                1000
            } else {
                *limit
            }),
            after: after.clone(),
        }),
        Command::Report { push, .. } => Request::PushReport(PushRef { push: push.clone() }),
        Command::Failures { push, samples } => Request::PushFailures(PushFailuresArgs {
            push: push.clone(),
            samples: Some(*samples),
        }),
        Command::Export { push, .. } => Request::PushExport(PushRef { push: push.clone() }),
        Command::RetryAudience { push, name, only } => Request::AudienceRetry(AudienceRetryArgs {
            push: push.clone(),
            name: name.clone(),
            only: only.clone(),
        }),
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
        Command::Channel { command } => command.request(),
        Command::Backup { file, force } => {
            // The daemon writes the file: name it from here, absolutely.
            let abs = if file.is_absolute() {
                file.clone()
            } else {
                std::env::current_dir()
                    .context("cannot read the current directory")?
                    .join(file)
            };
            Request::StoreBackup(StoreBackupArgs {
                path: abs.display().to_string(),
                force: *force,
            })
        }
        Command::Audit(a) => Request::AuditList(AuditListArgs {
            limit: Some(a.limit),
            action: a.action.clone(),
            actor: a.actor.clone(),
            before: a.before,
        }),
        Command::Events {
            push,
            member,
            limit,
        } => Request::EventsList(EventsListArgs {
            push: push.clone(),
            member: member.clone(),
            limit: Some(*limit),
        }),
        Command::Panel { command } => match command {
            PanelCommand::Login { viewer, ttl } => Request::PanelLogin(PanelLoginArgs {
                viewer: *viewer,
                ttl: ttl.clone(),
            }),
            PanelCommand::LogoutAll => Request::PanelLogoutAll(PanelLogoutAllArgs {}),
        },
    })
}

/// Writes `text` to `output` (and says so), or returns it for stdout.
fn write_or_return(output: Option<&std::path::Path>, text: String) -> Result<String> {
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(format!("wrote {}\n", path.display()))
        }
        None => Ok(text),
    }
}

/// `recipients --format csv`: every matching recipient, page after page.
async fn recipients_csv(
    client: &mut Client,
    mut args: PushRecipientsArgs,
    output: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let mut csv = String::new();
    let mut first = true;
    loop {
        let resp = client.call(&Request::PushRecipients(args.clone())).await?;
        if !resp.ok {
            let e = resp.error.as_ref();
            bail!(
                "{} ({})",
                e.map(|e| e.message.as_str()).unwrap_or("request failed"),
                e.map(|e| e.code.as_str()).unwrap_or("error")
            );
        }
        let page: RecipientsData = data(&resp)?;
        csv.push_str(&pushd::commands::recipients::csv(&page.recipients, first));
        first = false;
        match page.next {
            Some(next) => args.after = Some(next),
            None => break,
        }
    }
    print!("{}", write_or_return(output, csv)?);
    Ok(ExitCode::SUCCESS)
}

/// Streams the export into `output` (written to a temp file, renamed at the end).
async fn export(
    client: &mut Client,
    req: &Request,
    output: &PathBuf,
    json: bool,
) -> Result<ExitCode> {
    client.send(req).await?;
    let tmp = output.with_extension("csv.partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    loop {
        let resp = client.recv().await?;
        if !resp.ok {
            let _ = std::fs::remove_file(&tmp);
            let e = resp.error.unwrap_or(ErrorBody {
                code: "error".into(),
                message: "export failed".into(),
            });
            bail!("{} ({})", e.message, e.code);
        }
        let chunk: ExportData = data(&resp)?;
        file.write_all(chunk.csv.as_bytes())?;
        if !resp.more {
            file.flush()?;
            drop(file);
            std::fs::rename(&tmp, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            let rows = chunk.rows.unwrap_or(0);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "data": {"rows": rows, "path": output}})
                );
            } else {
                println!("wrote {rows} row(s) to {}", output.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `push show --follow`: a live progress bar until the push finishes.
async fn follow(client: &mut Client, req: &Request) -> Result<ExitCode> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let resp = client.call(req).await?;
        if !resp.ok {
            bar.abandon();
            let e = resp.error.as_ref();
            bail!(
                "{}",
                e.map(|e| e.message.as_str()).unwrap_or("request failed")
            );
        }
        let d: PushShowData = data(&resp)?;
        let p = &d.push;
        bar.set_prefix(format!("{} {}", p.name, p.status));
        bar.set_length(p.recipients);
        bar.set_position(p.sent + p.failed);
        bar.set_message(format!(
            "sent {} failed {} · {:.0}/min · ETA {}",
            p.sent,
            p.failed,
            p.current_rate,
            p.eta.as_deref().unwrap_or("-")
        ));
        if matches!(p.status.as_str(), "completed" | "cancelled") {
            bar.finish();
            println!();
            print!("{}", report_render::text(&d.report));
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
