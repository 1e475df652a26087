//! ffmpeg's `-progress` output: `key=value` lines, a block ending in `progress=continue|end`.
//! What the restream needs of it: bytes written to the target and media time sent.

/// The latest block's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// `total_size`: bytes written to the output so far.
    pub bytes: u64,
    /// `out_time_us`: media sent so far, microseconds.
    pub out_time_us: u64,
}

impl Progress {
    /// Takes one line; returns true at the end of a block (`progress=...`).
    pub fn line(&mut self, line: &str) -> bool {
        let Some((k, v)) = line.trim().split_once('=') else {
            return false;
        };
        match k {
            // "N/A" before the output is open: keep what we had.
            "total_size" => {
                if let Ok(n) = v.parse() {
                    self.bytes = n;
                }
            }
            "out_time_us" => {
                if let Ok(n) = v.parse::<i64>() {
                    self.out_time_us = u64::try_from(n).unwrap_or(0);
                }
            }
            "progress" => return true,
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_read() {
        let mut p = Progress::default();
        let block = "frame=252\nbitrate= 912.7kbits/s\ntotal_size=954710\nout_time_us=8368000\n\
                     out_time_ms=8368000\nout_time=00:00:08.368000\nspeed=   1x\n";
        for l in block.lines() {
            assert!(!p.line(l));
        }
        assert!(p.line("progress=continue"));
        assert_eq!(
            p,
            Progress {
                bytes: 954_710,
                out_time_us: 8_368_000
            }
        );
        p.line("total_size=N/A");
        p.line("out_time_us=-9223372036854775807");
        assert_eq!(p.bytes, 954_710);
        assert_eq!(p.out_time_us, 0);
    }
}
