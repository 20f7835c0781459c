//! Sent Fail, inspected: failed recipients grouped by error class and code,
//! with counts, the platform's message and sample recipients.

use crate::model::{DeliveryState, FailureGroup, FailureSample as Sample, PushId};
use crate::store::Result;
use rusqlite::{Connection, params};

pub fn groups(conn: &Connection, push: PushId, samples: u32) -> Result<Vec<FailureGroup>> {
    let failed = DeliveryState::Failed as i64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT coalesce(error_class, ''), coalesce(error_code, ''), count(*), coalesce(max(error_message), '')
         FROM deliveries INDEXED BY deliveries_failed WHERE push_id = ?1 AND state = {failed}
         GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
    ))?;
    let mut out: Vec<FailureGroup> = stmt
        .query_map([push], |r| {
            Ok(FailureGroup {
                class: r.get(0)?,
                code: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                message: r.get(3)?,
                samples: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut sample_stmt = conn.prepare_cached(&format!(
        "SELECT d.member_id, m.channel, m.channel_user_id, d.attempts
         FROM deliveries d INDEXED BY deliveries_failed JOIN members m ON m.id = d.member_id
         WHERE d.push_id = ?1 AND d.state = {failed}
           AND coalesce(d.error_class, '') = ?2 AND coalesce(d.error_code, '') = ?3
         ORDER BY d.id LIMIT ?4"
    ))?;
    for g in &mut out {
        g.samples = sample_stmt
            .query_map(params![push, g.class, g.code, samples], |r| {
                Ok(Sample {
                    member_id: r.get(0)?,
                    channel: r.get(1)?,
                    channel_user_id: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}
