//! Reading the walk's pages: pending recipients read in delivery order and
//! routed on the script pool up to [`AHEAD`] pages ahead of the sends, so the
//! next page's database read and Lua work overlap the current page's sends.

use super::Dispatcher;
use crate::links::Minter;
use crate::model::{DeliveryId, Member, MemberId, Millis, PushId, Routed, now_ms};
use crate::script::{Generation, ScriptError};
use crate::store::StoreError;
use crate::store::deliveries::{self, Pending};
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
    /// Only read (and kept) when the push has a send window.
    pub(super) timezone: String,
}

impl Due {
    fn of(p: &Pending, with_timezone: bool) -> Due {
        Due {
            delivery_id: p.delivery_id,
            attempts: p.attempts,
            fresh: p.attempts == 0 && p.next_attempt_at.is_none(),
            member_id: p.member.id,
            user: p.member.channel_user_id.clone(),
            timezone: if with_timezone {
                p.member.timezone.clone()
            } else {
                String::new()
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
    /// The push has a send window (the walk needs each member's timezone).
    pub(super) window: bool,
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
        let (d, g, template, push, window) = (
            self.d.clone(),
            self.generation.clone(),
            self.template.clone(),
            self.push,
            self.window,
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
                let (g, template, links) = (g.clone(), template.clone(), links.clone());
                let page = tokio::spawn(async move {
                    route_page(&g, &template, window, links.as_deref(), read?).await
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

/// Splits a page read into due and later recipients, routes the due ones
/// and puts their tracked-link URLs in.
async fn route_page(
    g: &Generation,
    template: &str,
    window: bool,
    links: Option<&Minter>,
    page: Vec<Pending>,
) -> Result<Page, StoreError> {
    let Some(last) = page.last().map(|p| p.delivery_id) else {
        return Ok(Page {
            last: None,
            due: Vec::new(),
            later_min: None,
        });
    };
    let now = now_ms();
    let (due, later): (Vec<Pending>, Vec<Pending>) = page
        .into_iter()
        .partition(|p| p.next_attempt_at.is_none_or(|t| t <= now));
    let later_min = later.iter().map(|p| p.next_attempt_at.unwrap_or(now)).min();
    let keep: Vec<Due> = due.iter().map(|p| Due::of(p, window)).collect();
    let members: Vec<Member> = due.into_iter().map(|p| p.member).collect();
    let mut routed = if members.is_empty() {
        Vec::new()
    } else {
        g.prepare(template, members, now).await
    };
    if let Some(links) = links {
        for (p, r) in keep.iter().zip(routed.iter_mut()) {
            if let Ok(Routed::Send { outbound, .. }) = r {
                links.apply(p.delivery_id, outbound);
            }
        }
    }
    Ok(Page {
        last: Some(last),
        due: keep.into_iter().zip(routed).collect(),
        later_min,
    })
}
