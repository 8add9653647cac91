//! Content digests (`sha256:…`), verified while bytes stream past, for every algorithm Flux may
//! use for artifacts: sha256 (its default), sha384, sha512 and blake3.

use std::fmt;

use sha2::Digest as _;

/// A parsed digest, `algorithm:hex`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
    Blake3,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
            Self::Blake3 => "blake3",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 | Self::Blake3 => 64,
            Self::Sha384 => 96,
            Self::Sha512 => 128,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{0:?} is not a digest of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (sha256, sha384, sha512, blake3 are)")]
    Unsupported(String),
}

impl std::str::FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| ParseError::Malformed(s.into()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha384" => Algorithm::Sha384,
            "sha512" => Algorithm::Sha512,
            "blake3" => Algorithm::Blake3,
            other => return Err(ParseError::Unsupported(other.into())),
        };
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ParseError::Malformed(s.into()));
        }
        Ok(Self {
            algorithm,
            hex: hex.into(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Hashes bytes as they stream past.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => Self::Blake3(Box::default()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha384(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
            Self::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Self::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Self::Sha384(h) => (Algorithm::Sha384, hex::encode(h.finalize())),
            Self::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
            Self::Blake3(h) => (Algorithm::Blake3, h.finalize().to_hex().to_string()),
        };
        Digest { algorithm, hex }
    }
}

/// The sha256 digest of a byte slice.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d: Digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            .parse()
            .unwrap();
        assert_eq!(d.algorithm, Algorithm::Sha256);
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(sha256(b"hello"), d);
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(ParseError::Unsupported(_))
        ));
        assert!(matches!(
            "nocolon".parse::<Digest>(),
            Err(ParseError::Malformed(_))
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn every_algorithm_hashes() {
        for (alg, len) in [
            (Algorithm::Sha256, 64),
            (Algorithm::Sha384, 96),
            (Algorithm::Sha512, 128),
            (Algorithm::Blake3, 64),
        ] {
            let mut h = Hasher::new(alg);
            h.update(b"hel");
            h.update(b"lo");
            let d = h.finish();
            assert_eq!(d.hex.len(), len);
            assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
        let mut b = Hasher::new(Algorithm::Blake3);
        b.update(b"hello");
        assert_eq!(
            b.finish().hex,
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
    }
}
