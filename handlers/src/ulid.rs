//! ULIDs: 48 bits of milliseconds and 80 bits of entropy in 26 Crockford base-32 characters,
//! so release ids sort by creation time.

pub use skald_engine::workflow::names::ulid as encode;

/// A new ULID from the wall clock and 80 bits from the operating system's randomness.
pub fn generate() -> std::io::Result<String> {
    use std::io::Read;
    let mut entropy = [0u8; 10];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut entropy)?;
    let entropy = entropy.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(encode(ms, entropy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_time_first_so_ids_sort_by_time() {
        assert_eq!(encode(0, 0), "00000000000000000000000000");
        assert_eq!(encode(1_469_918_176_385, 0), "01ARYZ6S41".to_string() + "0000000000000000");
        assert!(encode(2, 0) > encode(1, u128::MAX));
    }
}
