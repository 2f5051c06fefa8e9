//! How many requests one script call carries.

/// At most this many requests share one script call, so one call never keeps Redis busy for long.
pub const MAX_BATCH: usize = 128;

/// `items` in order, in calls of at most [`MAX_BATCH`].
pub fn split<T>(mut items: Vec<T>) -> impl Iterator<Item = Vec<T>> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let rest = items.split_off(items.len().min(MAX_BATCH));
        Some(std::mem::replace(&mut items, rest))
    })
}

/// `queued` requests grouped by the Redis Cluster hash slot `slot_of` says (a script call's keys
/// must share one), each group in calls of at most [`MAX_BATCH`], in the order they were asked for.
pub fn per_slot<T>(queued: impl Iterator<Item = T>, slot_of: fn(&T) -> u16) -> Vec<(u16, Vec<T>)> {
    let mut groups: Vec<(u16, Vec<T>)> = Vec::new();
    for item in queued {
        let slot = slot_of(&item);
        match groups.iter_mut().find(|(each, _)| *each == slot) {
            Some((_, group)) => group.push(item),
            None => groups.push((slot, vec![item])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(slot, group)| split(group).map(move |chunk| (slot, chunk)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_in_order_into_calls_of_at_most_max_batch() {
        let calls: Vec<Vec<usize>> = split((0..MAX_BATCH * 2 + 5).collect()).collect();
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 5]);
        let order: Vec<usize> = calls.into_iter().flatten().collect();
        assert_eq!(order, (0..MAX_BATCH * 2 + 5).collect::<Vec<_>>());
        assert_eq!(split(Vec::<u8>::new()).count(), 0);
    }
}
