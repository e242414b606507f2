//! Splitting a batch into statements of bounded size.

/// Most bytes of row data per statement when a batch is split ([`message_chunks`]): a
/// bound on one statement's message, not a packet size. It was 12 KiB, one TLS record,
/// while sqlx 0.9.0 left Nagle's algorithm on and a message spanning several records
/// waited ~45 ms for delayed ACKs; sqlx 0.9.1 sets `TCP_NODELAY`, and with 256 KiB a
/// drain's batch of finishes is one statement instead of about ten (docs/PERFORMANCE.md,
/// issue 26).
const MESSAGE_BYTES: usize = 256 * 1024;

/// Splits `items` into consecutive runs of at most [`MESSAGE_BYTES`] by `size` (one item
/// when a single item is larger), in order.
pub(super) fn message_chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|item| {
                bytes += 100 + size(item);
                bytes <= MESSAGE_BYTES
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_chunks_keep_order_and_bound_each_chunk() {
        let k = MESSAGE_BYTES / 12;
        let sizes = [5 * k, 5 * k, k, 20 * k, 10, 10, 3 * k];
        let chunks: Vec<Vec<usize>> = message_chunks(&sizes, |s| *s).map(<[usize]>::to_vec).collect();
        assert_eq!(chunks, [vec![5 * k, 5 * k, k], vec![20 * k], vec![10, 10, 3 * k]]);
        assert_eq!(message_chunks(&[] as &[usize], |s| *s).count(), 0);
    }
}
