//! GeoIP lookups from a MaxMind-format database (SPEC §3 `dns.*.geo.*`, §8).

use std::net::IpAddr;
use std::path::Path;

/// A two-letter code (ISO country, or continent: AF AN AS EU NA OC SA), stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code([u8; 2]);

impl Code {
    /// Parses a two-letter ASCII code (uppercased); `None` for anything else.
    pub fn new(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as a string.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// What the database says about one address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<Code>,
    /// Continent code.
    pub continent: Option<Code>,
}

/// Errors opening or reading a GeoIP database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or is not a valid MaxMind database.
    #[error("cannot open GeoIP database: {0}")]
    Open(String),
}

/// An open GeoIP database.
#[derive(Debug)]
pub struct GeoIp {
    _private: (),
}

impl GeoIp {
    /// Opens a MaxMind-format database.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Err(Error::Open(format!("{}: not implemented", path.display())))
    }

    /// Looks an address up; unknown addresses give `GeoInfo::default()`.
    pub fn lookup(&self, _ip: IpAddr) -> GeoInfo {
        GeoInfo::default()
    }
}
