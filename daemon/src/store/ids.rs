//! Public ids of rows: UUIDv7s that carry their row's seq.

use uuid::Uuid;

/// The public id of the row `seq` created at `created_at` (ms): a UUIDv7 whose timestamp is
/// `created_at` and whose 62-bit `rand_b` field holds `seq` (RFC 9562 allows a counter there).
/// Ids stay unique, time-ordered and standard, and finding a row by id is a rowid lookup.
pub fn public_id(created_at: i64, seq: i64) -> Uuid {
    let mut tail = [0u8; 10];
    tail[2..].copy_from_slice(&(seq as u64).to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(created_at.max(0) as u64, &tail).into_uuid()
}

/// The (created_at, seq) inside an id made by `public_id`.
pub fn decode_public_id(id: Uuid) -> Option<(i64, i64)> {
    if id.get_version_num() != 7 {
        return None;
    }
    let b = id.as_bytes();
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&b[..6]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..]);
    let seq = u64::from_be_bytes(seq) & ((1 << 62) - 1);
    Some((u64::from_be_bytes(ms) as i64, seq as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_round_trip_and_sort_by_time() {
        let id = public_id(1_764_409_900_123, 42);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(decode_public_id(id), Some((1_764_409_900_123, 42)));
        let big = (1i64 << 62) - 1;
        assert_eq!(decode_public_id(public_id(5, big)), Some((5, big)));
        assert!(public_id(1000, 9) < public_id(1001, 1));
        assert!(public_id(1000, 1) < public_id(1000, 2));
        assert_eq!(decode_public_id(Uuid::new_v4()), None);
    }
}
