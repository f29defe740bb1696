//! The process's own resident memory, read from `/proc/self/status` when asked (by `INFO` or a
//! scrape), never on a shard's path.

/// Resident set size now and at its peak, in bytes; `None` where `/proc` cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS`.
    pub now: u64,
    /// `VmHWM`: the highest `VmRSS` so far.
    pub peak: u64,
}

/// Reads [`Resident`] for this process.
pub fn resident() -> Option<Resident> {
    parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS` and `VmHWM` from the text of a `/proc/<pid>/status` file (values in kB).
fn parse_status(text: &str) -> Option<Resident> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb = line[name.len()..].trim().strip_suffix("kB")?.trim();
        kb.parse::<u64>().ok()?.checked_mul(1024)
    };
    Some(Resident {
        now: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// Bytes as Redis prints them in `*_human` fields: `512B`, `1.50K`, `23.84M`, `1.20G`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resident_and_peak_from_a_status_file() {
        let text = "Name:\ttoken-server\nVmHWM:\t  145088 kB\nVmRSS:\t   15248 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(text),
            Some(Resident {
                now: 15248 * 1024,
                peak: 145088 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\nVmRSS:\tlots\n"), None);
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let r = resident().expect("/proc/self/status on Linux");
        assert!(r.now > 0 && r.peak >= r.now, "{r:?}");
    }

    #[test]
    fn human_sizes_read_like_redis() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(25_000_000), "23.84M");
        assert_eq!(human(3 << 30), "3.00G");
    }
}
