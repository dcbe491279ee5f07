//! `--shard I/N`: a batch job's share of its input, for running one job as N processes
//! under a job runner (a Kubernetes Indexed Job, a Slurm array). An example belongs to a
//! shard by a stable hash of its id, not by its position, so the N outputs together hold
//! every row exactly once whatever the order of the input, and re-running a shard writes
//! the same rows.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole input.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the example with this id belongs to this shard.
    pub fn holds(&self, id: &str) -> bool {
        self.count == 1 || stable_hash(id.as_bytes()) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(index, count)| {
            Some(Shard { index: index.trim().parse().ok()?, count: count.trim().parse().ok()? })
        });
        match parsed {
            Some(shard) if shard.count >= 1 && shard.index < shard.count => Ok(shard),
            _ => Err(format!(
                "expected INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 0/4), got {:?}",
                crate::base::quote::quoted(text)
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a, then a SplitMix64 finaliser so that ids differing in their last
/// characters still spread evenly over the shards. Fixed forever: shard membership must
/// not change between versions.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_lands_in_exactly_one_shard_and_shards_are_even() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut sizes = [0usize; 3];
        for id in 0..30_000 {
            let id = id.to_string();
            let holders: Vec<usize> = (0..3).filter(|&s| shards[s].holds(&id)).collect();
            assert_eq!(holders.len(), 1, "{id}");
            sizes[holders[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (9_500..10_500).contains(&n)), "{sizes:?}");
    }

    #[test]
    fn the_hash_is_fixed() {
        // Computed independently (Python, the same constants): membership must never change.
        assert_eq!(stable_hash(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash(b"a"), 0x02c0_bdbf_4814_20f8);
        assert_eq!(stable_hash(b"user_1"), 0xe49e_1dd6_e92e_836f);
        assert_eq!(stable_hash(b"42"), 0xa428_ce54_7116_3b02);
        assert!(Shard { index: 1, count: 3 }.holds("user_1"));
        assert!(Shard { index: 0, count: 3 }.holds("42"));
    }

    #[test]
    fn parses_index_over_count() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1/0", "1", "-1/3", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
