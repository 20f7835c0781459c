//! From parsed arguments to the request sent over the control socket: one
//! function per subcommand group, each filling its protocol args.

use super::args::{
    AudienceCommand, Command, FilterArgs, ListFormat, MembersCommand, PanelCommand, PushCommand,
};
use anyhow::{Context, Result, bail};
use pushd::protocol::*;
use std::path::Path;

/// The request a client command sends (`serve` and `check` send none).
pub fn build_request(command: &Command) -> Result<Request> {
    Ok(match command {
        Command::Serve { .. } | Command::Check => bail!("not a client command"),
        Command::Status => Request::Status(StatusArgs {}),
        Command::Reload => Request::Reload(ReloadArgs {}),
        Command::Push { command } => push_request(command),
        Command::Audience { command } => audience_request(command),
        Command::Recipients {
            push,
            filter,
            limit,
            after,
            format,
            ..
        } => recipients_request(push, filter, *limit, after, *format),
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
        Command::Members { command } => members_request(command)?,
        Command::Channel { command } => command.request(),
        Command::Backup { file, force } => backup_request(file, *force)?,
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
        Command::Panel { command } => panel_request(command),
    })
}

fn push_request(command: &PushCommand) -> Request {
    match command {
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
        PushCommand::PickWinner { push, variant } => Request::PushPickWinner(PushPickWinnerArgs {
            push: push.clone(),
            variant: variant.clone(),
        }),
        PushCommand::List { status, limit } => Request::PushList(PushListArgs {
            status: status.clone(),
            limit: Some(*limit),
        }),
        PushCommand::Show { push, .. } => Request::PushShow(PushRef { push: push.clone() }),
        PushCommand::Pause { push } => Request::PushPause(PushRef { push: push.clone() }),
        PushCommand::Resume { push } => Request::PushResume(PushRef { push: push.clone() }),
        PushCommand::Cancel { push } => Request::PushCancel(PushRef { push: push.clone() }),
    }
}

fn audience_request(command: &AudienceCommand) -> Request {
    match command {
        AudienceCommand::Preview {
            name,
            limit,
            template,
        } => Request::AudiencePreview(AudiencePreviewArgs {
            name: name.clone(),
            limit: Some(*limit),
            template: template.clone(),
        }),
        AudienceCommand::List { after, limit } => Request::AudienceList(AudienceListArgs {
            after: after.clone(),
            limit: Some(*limit),
        }),
        AudienceCommand::Show { name, limit } => Request::AudienceShow(AudienceShowArgs {
            name: name.clone(),
            limit: Some(*limit),
        }),
        AudienceCommand::FromPush { push, filter, name } => Request::AudienceFromPush(
            AudienceFromPushArgs::of(filter_args(push, filter), name.clone()),
        ),
    }
}

fn recipients_request(
    push: &str,
    filter: &FilterArgs,
    limit: u32,
    after: &Option<String>,
    format: ListFormat,
) -> Request {
    Request::PushRecipients(PushRecipientsArgs {
        // csv walks every page: the largest page the daemon serves.
        limit: Some(if format == ListFormat::Csv {
            1000
        } else {
            limit
        }),
        after: after.clone(),
        ..filter_args(push, filter)
    })
}

/// Which recipients of `push` the filter options select (no page).
fn filter_args(push: &str, filter: &FilterArgs) -> PushRecipientsArgs {
    PushRecipientsArgs {
        push: push.to_string(),
        outcome: filter.outcome.clone(),
        channel: filter.channel.clone(),
        locale: filter.locale.clone(),
        error_class: filter.error_class.clone(),
        error_code: filter.error_code.clone(),
        variant: filter.variant.clone(),
        limit: None,
        after: None,
    }
}

fn members_request(command: &MembersCommand) -> Result<Request> {
    let MembersCommand::Import { file, skip_invalid } = command;
    let abs =
        std::fs::canonicalize(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Request::MembersImport(MembersImportArgs {
        path: Some(abs.display().to_string()),
        data: None,
        skip_invalid: *skip_invalid,
    }))
}

fn backup_request(file: &Path, force: bool) -> Result<Request> {
    // The daemon writes the file: name it from here, absolutely.
    let abs = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(file)
    };
    Ok(Request::StoreBackup(StoreBackupArgs {
        path: abs.display().to_string(),
        force,
    }))
}

fn panel_request(command: &PanelCommand) -> Request {
    match command {
        PanelCommand::Login { viewer, ttl } => Request::PanelLogin(PanelLoginArgs {
            viewer: *viewer,
            ttl: ttl.clone(),
        }),
        PanelCommand::LogoutAll => Request::PanelLogoutAll(PanelLogoutAllArgs {}),
    }
}
