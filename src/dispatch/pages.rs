//! Reading the walk's pages: pending recipients read in delivery order and
//! routed on the script pool up to [`AHEAD`] pages ahead of the sends, so the
//! next page's database read and Lua work overlap the current page's sends.
//! Members already over a frequency cap are skipped here, before any Lua
//! work or rate limit is spent on them (the claim checks again).
//! Tracked links get each delivery's URL here, as a page is routed.

use super::Dispatcher;
use super::policy::{Rules, held_until, local_day};
use crate::config::DailyHours;
use crate::links::Minter;
use crate::model::{DeliveryId, Member, MemberId, Millis, PushId, Routed, now_ms};
use crate::script::{Generation, ScriptError};
use crate::store::StoreError;
use crate::store::deliveries::{self, Pending};
use crate::store::policy as caps;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Recipients routed and rendered per round trip to the script host.
const PAGE: u32 = 512;
/// Pages read and routed ahead of the walk (the script pool routes one
/// while the next is read, and the walk never waits for both in turn).
const AHEAD: usize = 3;

/// One page of pending recipients: the due ones with their routed messages.
pub(super) struct Page {
    /// The last delivery read (the cursor for the next page); None = no more.
    pub(super) last: Option<DeliveryId>,
    pub(super) due: Vec<(Due, Result<Routed, ScriptError>)>,
    /// The earliest retry/deferral time among the page's not-yet-due rows.
    pub(super) later_min: Option<Millis>,
    /// Not-yet-due rows never attempted (held by quiet hours or a send
    /// window), by the time they are held until.
    pub(super) held: BTreeMap<Millis, u64>,
    /// Due first attempts whose member is over a frequency cap already:
    /// to be skipped as `capped` (one write for the page), not routed.
    pub(super) capped: Vec<DeliveryId>,
}

impl Page {
    /// Puts each routed message's tracked-link URLs in (its delivery's).
    fn with_links(mut self, links: Option<&Minter>) -> Page {
        if let Some(links) = links {
            for (p, r) in self.due.iter_mut() {
                if let Ok(Routed::Send { outbound, .. }) = r {
                    links.apply(p.delivery_id, outbound);
                }
            }
        }
        self
    }
}

/// Which pending recipients a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// All of them, through the push index.
    All,
    /// Only those with a time to wait for (retries, deferrals), through
    /// their own small index.
    Waiting,
}

/// What the walk keeps of a due recipient (its member goes to the script host).
pub(super) struct Due {
    pub(super) delivery_id: DeliveryId,
    pub(super) attempts: u32,
    /// Never attempted, not deferred (see `SendTask::fresh`).
    pub(super) fresh: bool,
    pub(super) member_id: MemberId,
    pub(super) user: String,
    /// The member's timezone (or `[policy] default_timezone`); only looked
    /// up when something needs it (a send window, quiet hours, caps).
    pub(super) tz: chrono_tz::Tz,
}

impl Due {
    fn of(p: &Pending, rules: &Rules, window: bool) -> Due {
        Due {
            delivery_id: p.delivery_id,
            attempts: p.attempts,
            fresh: p.attempts == 0 && p.next_attempt_at.is_none(),
            member_id: p.member.id,
            user: p.member.channel_user_id.clone(),
            tz: if rules.needs_timezone(window) {
                p.member.timezone.parse().unwrap_or(rules.default_tz)
            } else {
                rules.default_tz
            },
        }
    }
}

/// Reads and routes pages off the walk's path, so the next page's database
/// read and Lua work overlap the current page's sends.
pub(super) struct PageLoader {
    pub(super) d: Arc<Dispatcher>,
    pub(super) generation: Arc<Generation>,
    pub(super) template: Arc<str>,
    pub(super) push: PushId,
    /// The push's send window (the walk needs each member's timezone).
    pub(super) window: Option<DailyHours>,
    /// `policy = "bypass"`: `[policy]` is not checked for this push.
    pub(super) bypass: bool,
    /// Puts each delivery's tracked-link URLs in its message (None: the
    /// template tracks no link).
    pub(super) links: Option<Arc<Minter>>,
}

/// Pages read ahead of the walk, in order ([`PageLoader::ahead`]).
pub(super) struct ReadAhead {
    pages: mpsc::Receiver<JoinHandle<Result<Page, StoreError>>>,
    reader: JoinHandle<()>,
}

impl ReadAhead {
    pub(super) async fn next(&mut self) -> Result<Page, StoreError> {
        let page = self
            .pages
            .recv()
            .await
            .ok_or_else(|| StoreError::Sqlite("page reader stopped".into()))?;
        page.await
            .map_err(|e| StoreError::Sqlite(format!("page loader failed: {e}")))?
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PageLoader {
    /// Reads the pending recipients after `after`, page after page, each
    /// read starting as soon as the one before returns, and routes each
    /// page on the script pool while the next is read: up to [`AHEAD`]
    /// pages ahead of the walk. Ends with the first empty page (or error).
    pub(super) fn ahead(&self, after: DeliveryId, scan: Scan, skip_claimed: bool) -> ReadAhead {
        let (tx, rx) = mpsc::channel(AHEAD - 1);
        let (d, g, template, push, window, bypass) = (
            self.d.clone(),
            self.generation.clone(),
            self.template.clone(),
            self.push,
            self.window,
            self.bypass,
        );
        let links = self.links.clone();
        let reader = tokio::spawn(async move {
            let mut after = after;
            loop {
                let read = d
                    .store
                    .read(move |c| {
                        deliveries::pending_page(
                            c,
                            push,
                            after,
                            PAGE,
                            scan == Scan::Waiting,
                            skip_claimed,
                        )
                    })
                    .await;
                let last = match &read {
                    Ok(rows) => rows.last().map(|p| p.delivery_id),
                    Err(_) => None,
                };
                let (g, template, d) = (g.clone(), template.clone(), d.clone());
                let links = links.clone();
                // The policy in force as the page is read (a reload applies
                // from the next page on).
                let rules = Rules::for_push(&d.config.get().policy, bypass);
                let page = tokio::spawn(async move {
                    let read = read?;
                    let capped = over_cap(&d, &rules, window.as_ref(), &read).await?;
                    let page = route_page(&g, &template, &rules, window.is_some(), read, capped);
                    page.await.map(|p| p.with_links(links.as_deref()))
                });
                if tx.send(page).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        ReadAhead { pages: rx, reader }
    }
}

/// The page's due first attempts whose member has reached a cap already
/// (one read for the page). Counts only grow within a day, so what is over
/// now stays over; the claim checks again for what a concurrent push adds.
/// Recipients held now (quiet hours, send window) are left to the claim
/// made when they are released: by then it may be another day.
async fn over_cap(
    d: &Dispatcher,
    rules: &Rules,
    window: Option<&DailyHours>,
    page: &[Pending],
) -> Result<HashSet<DeliveryId>, StoreError> {
    let Some(limits) = rules.caps.filter(|_| rules.check_caps) else {
        return Ok(HashSet::new());
    };
    let now = now_ms();
    let firsts: Vec<&Pending> = page
        .iter()
        .filter(|p| p.attempts == 0 && p.next_attempt_at.is_none_or(|t| t <= now))
        .collect();
    if firsts.is_empty() {
        return Ok(HashSet::new());
    }
    let members: Vec<MemberId> = firsts.iter().map(|p| p.member.id).collect();
    // Every timezone's week starts within eight days of UTC's today.
    let since = local_day(chrono_tz::UTC, now).day - 8;
    let counted = d
        .store
        .read(move |c| caps::days_counted(c, &members, since))
        .await?;
    Ok(firsts
        .iter()
        .filter_map(|p| {
            let days = counted.get(&p.member.id)?;
            let tz = p.member.timezone.parse().unwrap_or(rules.default_tz);
            if held_until(window, rules.quiet.as_ref(), tz, now).is_some() {
                return None;
            }
            let today = local_day(tz, now);
            let on = |pred: &dyn Fn(i64) -> bool| days.iter().filter(|d| pred(**d)).count() as u64;
            let (day, week) = (on(&|d| d == today.day), on(&|d| d >= today.week_start));
            limits.reached(day, week).then_some(p.delivery_id)
        })
        .collect())
}

/// Renders and routes `due` in order, each A/B variant's members in one
/// batch with its body (most pages have one group: no variants).
async fn prepare_by_variant(
    g: &Generation,
    template: &str,
    due: Vec<Pending>,
    now: Millis,
) -> Vec<Result<Routed, ScriptError>> {
    let n = due.len();
    let mut groups: Vec<(Option<String>, Vec<usize>, Vec<Member>)> = Vec::new();
    for (i, p) in due.into_iter().enumerate() {
        match groups.iter_mut().find(|(v, _, _)| *v == p.variant) {
            Some((_, at, members)) => {
                at.push(i);
                members.push(p.member);
            }
            None => groups.push((p.variant, vec![i], vec![p.member])),
        }
    }
    if let [(variant, _, _)] = groups.as_slice()
        && variant.is_none()
    {
        let (_, _, members) = groups.pop().unwrap_or_default();
        return g.prepare(template, members, now).await;
    }
    let mut out: Vec<Option<Result<Routed, ScriptError>>> = (0..n).map(|_| None).collect();
    for (variant, at, members) in groups {
        let routed = g
            .prepare_for(None, variant.as_deref(), template, members, now)
            .await;
        for (i, r) in at.into_iter().zip(routed) {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ScriptError::new("no message was prepared"))))
        .collect()
}

/// Splits a page read into due and later recipients and routes the due
/// ones (but those `capped`, skipped without routing).
async fn route_page(
    g: &Generation,
    template: &str,
    rules: &Rules,
    window: bool,
    page: Vec<Pending>,
    capped: HashSet<DeliveryId>,
) -> Result<Page, StoreError> {
    let Some(last) = page.last().map(|p| p.delivery_id) else {
        return Ok(Page {
            last: None,
            due: Vec::new(),
            later_min: None,
            held: BTreeMap::new(),
            capped: Vec::new(),
        });
    };
    let now = now_ms();
    let (due, later): (Vec<Pending>, Vec<Pending>) = page
        .into_iter()
        .partition(|p| p.next_attempt_at.is_none_or(|t| t <= now));
    let later_min = later.iter().map(|p| p.next_attempt_at.unwrap_or(now)).min();
    let mut held = BTreeMap::new();
    for t in later.iter().filter(|p| p.attempts == 0) {
        *held.entry(t.next_attempt_at.unwrap_or(now)).or_insert(0) += 1;
    }
    let due: Vec<Pending> = if capped.is_empty() {
        due
    } else {
        due.into_iter()
            .filter(|p| !capped.contains(&p.delivery_id))
            .collect()
    };
    let keep: Vec<Due> = due.iter().map(|p| Due::of(p, rules, window)).collect();
    let routed = prepare_by_variant(g, template, due, now).await;
    Ok(Page {
        last: Some(last),
        due: keep.into_iter().zip(routed).collect(),
        later_min,
        held,
        capped: capped.into_iter().collect(),
    })
}
