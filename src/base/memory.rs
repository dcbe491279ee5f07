//! Refusing what cannot fit: a size the user set (a width, a sequence length, an id) is
//! turned into a byte estimate before anything that large is allocated, and compared with
//! the memory this machine has available, so the answer is one line instead of an abort.

use anyhow::{Result, bail};

/// Bytes of memory available to this process (Linux `MemAvailable`), if known.
pub fn available_bytes() -> Option<u128> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of one f32 trained with Adam: the value, its gradient and two moments.
pub const TRAINED_F32: u128 = 16;

/// Fails, naming `what`, when `bytes` exceeds the available memory.
pub fn ensure_fits(what: &str, bytes: u128) -> Result<()> {
    match available_bytes() {
        Some(available) if bytes > available => {
            bail!(
                "{what} needs about {}, more than the {} this machine has available",
                size(bytes),
                size(available)
            )
        }
        _ => Ok(()),
    }
}

/// A byte count for people: `512.0 MiB`, `3.2 TiB`.
pub fn size(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", units[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(size(u128::from(u64::MAX)), "16.0 EiB");
    }

    #[test]
    fn an_absurd_size_is_refused_with_both_numbers() {
        let err = ensure_fits("model.hidden = 1000000000000", 1u128 << 80).unwrap_err().to_string();
        assert!(err.starts_with("model.hidden = 1000000000000 needs about "), "{err}");
        assert!(err.contains("this machine has available"), "{err}");
        ensure_fits("a small net", 1024).unwrap();
    }
}
