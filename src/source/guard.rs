//! A guard over the bytes of a tar stream, between decompression and the tar reader: it reads
//! every header as it passes and refuses, before the tar reader takes them into memory,
//! metadata entries (PAX headers, GNU long names) larger than a name could need, and a stream
//! (skipped entries, padding and metadata included) larger than the extraction limit allows.
//! The tar reader reads long names whole, so without this a tiny compressed artifact can make
//! extraction allocate hundreds of megabytes.

use std::io::{self, Read};

/// Largest PAX header or GNU long name accepted: far above any real path (PATH_MAX is 4 KiB).
pub const MAX_METADATA: u64 = 64 * 1024;

const BLOCK: usize = 512;

/// Why the guard stopped the stream; carried inside the `io::Error` the tar reader returns.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error(
        "the artifact's entry {name:?} carries {size} bytes of {what}, more than the {MAX_METADATA} bytes a name or PAX header may take"
    )]
    Metadata {
        name: String,
        what: &'static str,
        size: u64,
    },
    #[error("the artifact unpacks to more than {limit} bytes")]
    Stream { limit: u64 },
}

pub struct Guard<R> {
    inner: R,
    /// Bytes of the current entry's data (with padding) still to pass.
    data_left: u64,
    header: [u8; BLOCK],
    header_fill: usize,
    total: u64,
    limit: u64,
}

impl<R: Read> Guard<R> {
    /// `limit`: the most bytes the whole tar stream may have.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            data_left: 0,
            header: [0; BLOCK],
            header_fill: 0,
            total: 0,
            limit,
        }
    }

    fn inspect(&mut self, mut bytes: &[u8]) -> Result<(), Refused> {
        self.total += bytes.len() as u64;
        if self.total > self.limit {
            return Err(Refused::Stream { limit: self.limit });
        }
        while !bytes.is_empty() {
            if self.data_left > 0 {
                let skip = usize::try_from(self.data_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.data_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (BLOCK - self.header_fill).min(bytes.len());
            self.header[self.header_fill..self.header_fill + take].copy_from_slice(&bytes[..take]);
            self.header_fill += take;
            bytes = &bytes[take..];
            if self.header_fill == BLOCK {
                self.header_fill = 0;
                self.data_left = self.check_header()?;
            }
        }
        Ok(())
    }

    /// The data bytes (padded to blocks) that follow the header just read.
    fn check_header(&self) -> Result<u64, Refused> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            return Ok(0); // end-of-archive blocks
        }
        let size = size_of(&h[124..136]);
        let what = match h[156] {
            b'x' | b'g' => Some("PAX header"),
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            _ => None,
        };
        if let Some(what) = what
            && size > MAX_METADATA
        {
            let raw = &h[..100];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            return Err(Refused::Metadata {
                name: String::from_utf8_lossy(&raw[..end])
                    .chars()
                    .take(100)
                    .collect(),
                what,
                size,
            });
        }
        // A size too large to pad is refused by the stream limit as its data passes.
        Ok(size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64))
    }
}

/// A header's size field: octal digits, or GNU's base-256 (first byte's high bit set). An
/// unreadable field counts as the largest size, so that it is refused, not trusted.
fn size_of(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |acc, b| {
                acc.checked_mul(256).map(|a| a + u64::from(*b))
            })
            .unwrap_or(u64::MAX);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return 0;
    }
    u64::from_str_radix(std::str::from_utf8(&digits).unwrap_or("0"), 8).unwrap_or(u64::MAX)
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inspect(&buf[..n])
            .map_err(|refused| io::Error::new(io::ErrorKind::InvalidData, refused))?;
        Ok(n)
    }
}

/// The guard's verdict inside an error of the tar reader, if it was the guard's.
pub fn refused(e: &io::Error) -> Option<&Refused> {
    e.get_ref()?.downcast_ref::<Refused>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}");
        h[124..124 + size.len()].copy_from_slice(size.as_bytes());
        h[156] = kind;
        h
    }

    fn read_all(bytes: &[u8], limit: u64, chunk: usize) -> Result<u64, Refused> {
        let mut g = Guard::new(bytes, limit);
        let mut buf = vec![0; chunk];
        let mut total = 0;
        loop {
            match g.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(refused(&e).cloned().expect("the guard's error")),
            }
        }
    }

    impl Clone for Refused {
        fn clone(&self) -> Self {
            match self {
                Self::Metadata { name, what, size } => Self::Metadata {
                    name: name.clone(),
                    what,
                    size: *size,
                },
                Self::Stream { limit } => Self::Stream { limit: *limit },
            }
        }
    }

    #[test]
    fn passes_ordinary_archives_and_skips_data_blocks() {
        let mut tar = header("main.tf", b'0', 700);
        tar.extend(vec![b'x'; 1024]); // 700 bytes of data, padded
        tar.extend(header("PaxHeaders/a", b'x', 30));
        tar.extend(vec![b'y'; 512]);
        tar.extend(vec![0; 1024]);
        for chunk in [1, 7, 512, 4096] {
            assert_eq!(read_all(&tar, 1 << 20, chunk), Ok(tar.len() as u64));
        }
    }

    #[test]
    fn refuses_huge_metadata_before_it_is_read_and_streams_over_the_limit() {
        let mut tar = header("./PaxHeaders/huge", b'x', 50 << 20);
        tar.extend(vec![b'a'; 4096]);
        assert_eq!(
            read_all(&tar, 1 << 30, 512),
            Err(Refused::Metadata {
                name: "./PaxHeaders/huge".into(),
                what: "PAX header",
                size: 50 << 20
            })
        );
        let long = header("././@LongLink", b'L', 1 << 20);
        assert!(matches!(
            read_all(&long, 1 << 30, 512),
            Err(Refused::Metadata {
                what: "GNU long name",
                ..
            })
        ));
        // Found by fuzzing: a size field too large to pad to blocks is no overflow; its data
        // is skipped as it passes (and the stream limit stops a stream that long).
        let mut huge = header("huge", b'0', 0);
        huge[124..136].copy_from_slice(&[0xff; 12]);
        huge.extend(vec![0; 1024]);
        assert_eq!(read_all(&huge, 4096, 512), Ok(huge.len() as u64));
        let mut big = header("big", b'0', 10_000);
        big.extend(vec![0; 10_240]);
        assert_eq!(
            read_all(&big, 4096, 512),
            Err(Refused::Stream { limit: 4096 })
        );
    }
}
