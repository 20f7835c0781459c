//! What the CLI prints for a reply: the daemon's data rendered for a
//! person (or written to `--output`), and the streamed or repeated calls
//! (export, csv pages, `--follow`).

use super::args::{Command, ListFormat, ReportFormat};
use anyhow::{Context, Result, bail};
use pushd::analytics::render as report_render;
use pushd::control::client::Client;
use pushd::control::render;
use pushd::protocol::*;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The text for a successful reply (a report in HTML asks the daemon for
/// its failures too).
pub async fn text(
    client: &mut Client,
    command: &Command,
    request: &Request,
    resp: &Response,
) -> Result<String> {
    Ok(match (command, request) {
        (_, Request::Status(_)) => render::status(&data(resp)?),
        (_, Request::Reload(_)) => render::reload(&data(resp)?),
        (_, Request::MembersImport(_)) => render::import(&data(resp)?),
        (_, Request::AuditList(_)) => render::audit(&data(resp)?),
        (_, Request::PushCreate(_)) => render::push_created(&data(resp)?),
        (_, Request::PushList(_)) => render::pushes(&data::<PushListData>(resp)?.pushes),
        (
            _,
            Request::PushShow(_)
            | Request::PushPause(_)
            | Request::PushPickWinner(_)
            | Request::PushResume(_)
            | Request::PushCancel(_),
        ) => render::push_detail(&data::<PushShowData>(resp)?.push),
        (Command::Report { format, output, .. }, Request::PushReport(a)) => {
            let report: ReportData = data(resp)?;
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
        (_, Request::PushFailures(_)) => render::failures(&data(resp)?),
        (_, Request::AudiencePreview(_)) => render::preview(&data(resp)?),
        (_, Request::AudienceList(_)) => render::audiences(&data(resp)?),
        (_, Request::AudienceShow(_)) => render::audience(&data(resp)?),
        (_, Request::AudienceRetry(_) | Request::AudienceFromPush(_)) => {
            render::retry_audience(&data(resp)?)
        }
        (Command::Recipients { format, output, .. }, Request::PushRecipients(_)) => {
            let text = match format {
                ListFormat::Json => serde_json::to_string_pretty(&resp.data)? + "\n",
                _ => render::recipients(&data(resp)?),
            };
            write_or_return(output.as_deref(), text)?
        }
        (_, Request::EventsList(_)) => render::events(&data(resp)?),
        (_, Request::PanelLogin(_)) => {
            let login: PanelLoginData = data(resp)?;
            eprintln!(
                "one-time {} login link, valid until {}:",
                login.role, login.expires_at
            );
            format!("{}\n", login.url)
        }
        (_, Request::PanelLogoutAll(_)) => {
            let out: PanelLogoutAllData = data(resp)?;
            format!(
                "ended {} panel session(s); unused login links are void\n",
                out.sessions_ended
            )
        }
        (_, Request::ChannelTest(_)) => render::channel_test(&data(resp)?),
        (_, Request::ChannelWebhook(_)) => render::channel_webhook(&data(resp)?),
        (_, Request::StoreBackup(_)) => render::backup(&data(resp)?),
        _ => serde_json::to_string_pretty(&resp.data)? + "\n",
    })
}

/// What some failures carry: the rejected import rows, a channel test's or
/// webhook's report (the platform's answer and what to do).
pub fn print_failure_data(request: &Request, resp: &Response) -> Result<()> {
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
pub async fn recipients_csv(
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
pub async fn export(
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
pub async fn follow(client: &mut Client, req: &Request) -> Result<ExitCode> {
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
