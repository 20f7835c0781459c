//! The A/B winner phase of a walk. Once only the members waiting for the
//! winner are left, the test share is sent: that time (plus `wait`) is
//! recorded once, so a restart keeps the decision time; then the winner is
//! chosen — by the metric's rate when it is due (`auto`), or by an admin's
//! `push pick-winner` (`manual`) — and released to the rest in one
//! transaction, so a crash decides once or not at all.

use super::{Control, Dispatcher};
use crate::model::{PushId, now_ms};
use crate::store::pushes;
use crate::store::{StoreError, audit, variants as ab};
use crate::variants::{Plan, Score, WinnerMode, best};
use std::time::Duration;
use tokio::sync::watch;

/// How often a manual test looks for a winner picked while the runner
/// was not listening (a pick-winner also wakes it at once).
const MANUAL_POLL: Duration = Duration::from_secs(2);

/// What the phase step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing waits for a winner (or something else is still pending):
    /// the walk goes on as without variants.
    Idle,
    /// Members were released (or the control changed): pass again, in full.
    Again,
}

/// The step to take when a pass found nothing due.
pub(super) async fn step(
    d: &Dispatcher,
    id: PushId,
    plan: &Plan,
    ctl: &mut watch::Receiver<Control>,
) -> Result<Step, StoreError> {
    let Some(test) = plan.test else {
        return Ok(Step::Idle);
    };
    let (waiting, remaining, winner) = d
        .store
        .read(move |c| {
            let row = pushes::find(c, &id.to_string())?;
            let counts = pushes::counts(c, id)?;
            Ok((ab::waiting(c, id)?, counts.remaining(), row.ab_winner))
        })
        .await?;
    if waiting == 0 {
        return Ok(Step::Idle);
    }
    if let Some(w) = winner {
        // (A decision releases in the same transaction; this only repairs a
        // row written by hand.)
        d.store.write(move |c| ab::release(c, id, &w)).await?;
        return Ok(Step::Again);
    }
    if remaining > waiting {
        return Ok(Step::Idle);
    }
    let now = now_ms();
    let due = now.saturating_add(test.wait_ms);
    let decide_at = d.store.write(move |c| ab::mark_tested(c, id, due)).await?;
    if decide_at == due {
        tracing::info!(
            push = id,
            waiting,
            mode = test.winner.as_str(),
            "A/B test share sent; waiting for the winner"
        );
    }
    match test.winner {
        WinnerMode::Auto => {
            let wait = Duration::from_millis((decide_at - now_ms()).max(0) as u64);
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // Paused, cancelled, stopping or a winner picked: look again.
                    _ = ctl.changed() => return Ok(Step::Again),
                }
            }
            decide_auto(d, id, plan).await?;
            Ok(Step::Again)
        }
        WinnerMode::Manual => loop {
            tokio::select! {
                _ = tokio::time::sleep(MANUAL_POLL) => {}
                _ = ctl.changed() => {}
            }
            if *ctl.borrow() != Control::Run {
                return Ok(Step::Again);
            }
            let picked = d
                .store
                .read(move |c| Ok(pushes::find(c, &id.to_string())?.ab_winner.is_some()))
                .await?;
            if picked {
                return Ok(Step::Again);
            }
        },
    }
}

/// Chooses the variant with the best rate on the metric and releases it
/// to the rest (unless an admin picked one meanwhile).
async fn decide_auto(d: &Dispatcher, id: PushId, plan: &Plan) -> Result<(), StoreError> {
    let Some(test) = plan.test else {
        return Ok(());
    };
    let p = plan.clone();
    let counts = d.store.read(move |c| ab::counts(c, id, &p)).await?;
    let scores: Vec<Score> = counts.iter().map(|v| v.score(test.metric)).collect();
    let winner = best(&scores)
        .map(|i| scores[i].variant.clone())
        .or_else(|| plan.variants.first().cloned())
        .unwrap_or_default();
    let detail = scores
        .iter()
        .map(|s| {
            format!(
                "{} {}/{} {} ({:.1}%)",
                s.variant,
                s.hits,
                s.sent,
                test.metric.as_str(),
                s.rate() * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let w = winner.clone();
    match d
        .store
        .write(move |c| ab::decide(c, id, &w, "auto", now_ms()))
        .await
    {
        Ok(released) => {
            tracing::info!(push = id, %winner, released, scores = %detail, "A/B winner chosen");
            audit::log(
                &d.store,
                None,
                "push.winner",
                Some(&id.to_string()),
                true,
                Some(format!(
                    "{winner} by {} rate: {detail}",
                    test.metric.as_str()
                )),
            )
            .await;
        }
        // Picked by an admin between the read and the write.
        Err(StoreError::Invalid(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
