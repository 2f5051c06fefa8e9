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
