//! Small helpers used across modules: human durations, aligned text tables,
//! grouping, batching.

pub mod duration;
pub mod table;

/// Groups `items` by `key`, keeping first-seen order of keys and of items
/// within a group. For the handful of keys a batch has (channels, counter
/// cells), a linear search beats hashing.
pub fn group_by<T, K: PartialEq>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

/// The next batch from a queue of writes: waits for one item, yields once so
/// the tasks running right now can queue theirs too (one commit for all of
/// them costs far less than one each), then takes what is queued, up to
/// `max`. Empty once every sender is gone.
pub async fn next_batch<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, max: usize) -> Vec<T> {
    let mut batch = Vec::new();
    if rx.recv_many(&mut batch, max).await == 0 {
        return batch;
    }
    tokio::task::yield_now().await;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_by_keeps_first_seen_order() {
        let g = super::group_by([("a", 1), ("b", 2), ("a", 3)], |(k, _)| *k);
        assert_eq!(
            g,
            vec![("a", vec![("a", 1), ("a", 3)]), ("b", vec![("b", 2)])]
        );
    }
}
