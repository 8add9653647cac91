//! Saved plans in Secrets: gzip-compressed and split into pieces below the Secret size limit.

use std::io::{Read, Write};

/// Bytes per piece: well under the 1 MiB limit of a Secret, leaving room for metadata.
pub const CHUNK: usize = 900 * 1024;

/// Compresses `data` and splits it into pieces of at most `chunk` bytes.
pub fn pack(data: &[u8], chunk: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data)?;
    let compressed = gz.finish()?;
    Ok(compressed
        .chunks(chunk.max(1))
        .map(<[u8]>::to_vec)
        .collect())
}

/// Joins pieces (in order) and decompresses them.
pub fn unpack(pieces: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
    let joined: Vec<u8> = pieces.concat();
    let mut out = vec![];
    flate2::read::GzDecoder::new(&joined[..]).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_pieces() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..3_000_000)
            .map(|_| {
                // xorshift64: incompressible enough to need several pieces.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let pieces = pack(&data, CHUNK).unwrap();
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.len() <= CHUNK));
        assert_eq!(unpack(&pieces).unwrap(), data);
        assert!(
            unpack(&pieces[..1]).is_err(),
            "a missing piece is an error, not a short plan"
        );
    }
}
