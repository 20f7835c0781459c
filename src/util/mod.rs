//! Small helpers used across modules: human durations, aligned text tables,
//! grouping.

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
