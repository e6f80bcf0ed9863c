//! GeoIP lookups from a MaxMind-format database (SPEC §3 `dns.*.geo.*`, §8).
//!
//! The database is read into memory once per (re)load and checked thoroughly there: a
//! corrupt or wrong-kind file must be rejected by `dnsgate check` and at reload (SPEC §7),
//! not discovered one query at a time. After that, [`GeoIp::lookup`] is on the query path
//! (once for the client, once per resolved address), so it decodes only the two codes it
//! needs, borrowing from the database buffer, and never allocates or fails: anything
//! unexpected reads as "unknown".

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::Deserialize;

use crate::diag::Diagnostic;

/// A two-letter code (ISO country, or continent: AF AN AS EU NA OC SA), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({:?})", self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Errors opening a GeoIP database. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read GeoIP database {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a MaxMind DB file, or it is corrupt (found by the header checks or
    /// by the full verification [`GeoIp::open`] runs).
    #[error("{} is not a valid MaxMind database: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the reader found wrong.
        #[source]
        source: MaxMindDbError,
    },
    /// A valid MaxMind database whose records hold no country or continent codes, such as
    /// GeoLite2-ASN or GeoIP2-Anonymous-IP: a Country or City database is needed.
    #[error(
        "{} is a {database_type:?} database without country or continent data; \
         use a GeoIP2/GeoLite2 Country or City database (or DB-IP's IP to Country Lite)",
        path.display()
    )]
    NotCountry {
        /// The database file.
        path: PathBuf,
        /// The database type from its metadata (for example `GeoLite2-ASN`).
        database_type: String,
    },
}

impl Error {
    /// The database file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::Open { path, .. } | Self::NotCountry { path, .. } => path,
        }
    }

    /// The error as a whole-file diagnostic, for `dnsgate check` (SPEC §1).
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::file(self.path(), self.to_string())
    }
}

/// How many records [`GeoIp::open`] decodes to decide whether the database is Country- or
/// City-like. Real databases have codes on their first records; the cap bounds the cost on
/// a large database of the wrong kind.
const SCHEMA_SAMPLE: usize = 1024;

/// An open GeoIP database.
#[derive(Debug)]
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl GeoIp {
    /// Opens a MaxMind-format Country or City database (GeoIP2, GeoLite2, DB-IP Lite).
    ///
    /// The whole file is verified here (search tree, data section, metadata), so a corrupt
    /// file fails now with [`Error::Open`] rather than at lookup time; this walks every
    /// record once, which costs time proportional to the file size at start and reload only.
    /// The verification applies the rules of MaxMind's own verifier, which also require a
    /// non-empty `database_type` and `description` in the metadata (every published
    /// database has both; a self-built one must set them). A valid database without
    /// country/continent codes fails with [`Error::NotCountry`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        // Corruption in the data section (for example a malformed double in a City record)
        // passes `from_source`, which only checks the header and layout; only a full walk
        // finds it.
        reader.verify().map_err(invalid)?;
        if !has_country_data(&reader) {
            return Err(Error::NotCountry {
                path: path.to_path_buf(),
                database_type: reader.metadata().database_type.clone(),
            });
        }
        Ok(Self { reader })
    }

    /// Looks an address up; unknown addresses give `GeoInfo::default()`.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are looked up as IPv4. A record
    /// without a `country` falls back to its `registered_country` (MaxMind leaves `country`
    /// out where it cannot place the user, for example on some anycast and satellite
    /// networks). Never fails and does not allocate: [`GeoIp::open`] has verified the file,
    /// and anything the decoder still rejects reads as unknown.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let ip = ip.to_canonical();
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return GeoInfo::default();
        }
        match self
            .reader
            .lookup(ip)
            .and_then(|found| found.decode::<Record<'_>>())
        {
            Ok(Some(record)) => record.info(),
            Ok(None) | Err(_) => GeoInfo::default(),
        }
    }

    /// The database type from the file's metadata (for example `GeoLite2-Country`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the Unix epoch (from its metadata).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }
}

/// Whether any of the first [`SCHEMA_SAMPLE`] records carries a country or continent code.
fn has_country_data(reader: &Reader<Vec<u8>>) -> bool {
    let Ok(networks) = reader.networks(WithinOptions::default()) else {
        return false;
    };
    networks.take(SCHEMA_SAMPLE).any(|found| {
        let record = found.and_then(|found| found.decode::<Record<'_>>());
        matches!(record, Ok(Some(record)) if record.info() != GeoInfo::default())
    })
}

/// The part of a GeoIP2 Country or City record that dnsgate uses. Smaller than
/// `maxminddb::geoip2::Country`: the decoder skips the localized names instead of
/// decoding eight of them per lookup. All strings borrow from the database buffer.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentRecord<'a>>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

impl Record<'_> {
    fn info(&self) -> GeoInfo {
        fn iso<'a>(country: Option<&CountryRecord<'a>>) -> Option<&'a str> {
            country.and_then(|c| c.iso_code)
        }
        let country = iso(self.country.as_ref()).or_else(|| iso(self.registered_country.as_ref()));
        GeoInfo {
            country: country.and_then(Code::new),
            continent: self
                .continent
                .as_ref()
                .and_then(|c| c.code)
                .and_then(Code::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of MaxMind's test databases, vendored in `geoip/maxmind-test/` (see its README).
    fn maxmind(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("geoip/maxmind-test")
            .join(file)
    }

    fn info(geo: &GeoIp, ip: &str) -> (Option<String>, Option<String>) {
        let got = geo.lookup(ip.parse().unwrap());
        (
            got.country.map(|c| c.to_string()),
            got.continent.map(|c| c.to_string()),
        )
    }

    fn known(country: &str, continent: &str) -> (Option<String>, Option<String>) {
        (Some(country.to_owned()), Some(continent.to_owned()))
    }

    #[test]
    fn code_parses_two_ascii_letters_only() {
        assert_eq!(Code::new("pt").unwrap().as_str(), "PT");
        assert_eq!(Code::new("EU").unwrap().to_string(), "EU");
        assert_eq!(format!("{:?}", Code::new("eu").unwrap()), "Code(\"EU\")");
        for bad in ["", "P", "PRT", "P1", "é", "--"] {
            assert_eq!(Code::new(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn maxmind_country_test_databases_look_up() {
        for file in ["GeoIP2-Country-Test.mmdb", "GeoLite2-Country-Test.mmdb"] {
            let geo = GeoIp::open(&maxmind(file)).unwrap();
            assert!(geo.database_type().contains("Country"), "{file}");
            assert_eq!(info(&geo, "81.2.69.160"), known("GB", "EU"), "{file}");
            assert_eq!(info(&geo, "89.160.20.112"), known("SE", "EU"), "{file}");
            assert_eq!(info(&geo, "216.160.83.56"), known("US", "NA"), "{file}");
            assert_eq!(info(&geo, "202.196.224.1"), known("PH", "AS"), "{file}");
            assert_eq!(info(&geo, "2001:218::1"), known("JP", "AS"), "{file}");
            assert_eq!(
                geo.lookup("1.1.1.1".parse().unwrap()),
                GeoInfo::default(),
                "{file}"
            );
        }
        // Only the GeoIP2 file has the CN entry (the shared README lists it for both).
        let geo = GeoIp::open(&maxmind("GeoIP2-Country-Test.mmdb")).unwrap();
        assert_eq!(info(&geo, "175.16.199.1"), known("CN", "AS"));
    }

    #[test]
    fn city_database_is_a_superset() {
        let geo = GeoIp::open(&maxmind("GeoIP2-City-Test.mmdb")).unwrap();
        assert_eq!(info(&geo, "81.2.69.160"), known("GB", "EU"));
        assert_eq!(info(&geo, "175.16.199.1"), known("CN", "AS"));
        assert_eq!(info(&geo, "2001:218::1"), known("JP", "AS"));
        assert_eq!(geo.lookup("1.1.1.1".parse().unwrap()), GeoInfo::default());
    }

    #[test]
    fn ipv4_mapped_ipv6_looks_up_as_ipv4() {
        let geo = GeoIp::open(&maxmind("GeoIP2-Country-Test.mmdb")).unwrap();
        assert_eq!(info(&geo, "::ffff:81.2.69.160"), known("GB", "EU"));
        assert_eq!(info(&geo, "::ffff:175.16.199.1"), known("CN", "AS"));
    }

    #[test]
    fn country_is_preferred_over_registered_country() {
        // 81.2.69.160 is located in GB but registered to US in MaxMind's test data.
        let geo = GeoIp::open(&maxmind("GeoIP2-Country-Test.mmdb")).unwrap();
        assert_eq!(info(&geo, "81.2.69.160").0.as_deref(), Some("GB"));
    }

    #[test]
    fn corrupt_data_section_fails_at_open() {
        // The reader's header checks accept this file; only the verification finds the
        // malformed doubles in the City records.
        let path = maxmind("GeoIP2-City-Test-Broken-Double-Format.mmdb");
        let err = GeoIp::open(&path).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("GeoIP2-City-Test-Broken-Double-Format.mmdb"),
            "{msg}"
        );
        assert!(msg.contains("not a valid MaxMind database"), "{msg}");
        assert!(msg.contains("double"), "{msg}");
    }

    #[test]
    fn corrupt_search_tree_fails_at_open() {
        let err = GeoIp::open(&maxmind("GeoIP2-City-Test-Invalid-Node-Count.mmdb")).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("search tree"), "{err}");
        let diag = err.to_diagnostic();
        assert_eq!((diag.line, diag.col), (1, 1));
        assert!(
            diag.path
                .ends_with("GeoIP2-City-Test-Invalid-Node-Count.mmdb")
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = GeoIp::open(Path::new("/nonexistent/GeoLite2-Country.mmdb")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("/nonexistent/GeoLite2-Country.mmdb"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_empty_files_fail_at_open() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty.mmdb", &b""[..]),
            ("text.mmdb", &b"not a database\n"[..]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = GeoIp::open(&path).unwrap_err();
            assert!(matches!(err, Error::Open { .. }), "{name}: {err:?}");
        }
    }

    #[test]
    fn truncated_database_fails_at_open() {
        let bytes = std::fs::read(maxmind("GeoIP2-Country-Test.mmdb")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 10, 100] {
            let path = dir.path().join(format!("cut-{cut}.mmdb"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(GeoIp::open(&path).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn database_without_country_data_is_rejected() {
        use mmdb_writer::{Value, Writer};
        let mut writer = Writer::builder("GeoLite2-ASN")
            .description(&[("en", "test")])
            .build();
        let asn = Value::map([
            ("autonomous_system_number", Value::from(64_496_u32)),
            ("autonomous_system_organization", Value::from("Example")),
        ]);
        writer
            .insert_value("192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(), asn)
            .unwrap();
        let (_dir, path) = write_db(writer);
        let err = GeoIp::open(&path).unwrap_err();
        assert!(
            matches!(&err, Error::NotCountry { database_type, .. } if database_type == "GeoLite2-ASN")
        );
        assert!(
            err.to_string()
                .contains("without country or continent data"),
            "{err}"
        );
    }

    #[test]
    fn record_without_country_falls_back_to_registered_country() {
        use mmdb_writer::{Value, Writer};
        let mut writer = Writer::builder("GeoIP2-Country")
            .description(&[("en", "test")])
            .build();
        let code = |k: &str, v: &str| Value::map([(k.to_owned(), Value::from(v))]);
        let record = Value::map([
            ("continent", code("code", "EU")),
            ("registered_country", code("iso_code", "IE")),
        ]);
        writer
            .insert_value("198.51.100.0/24".parse::<ipnet::IpNet>().unwrap(), record)
            .unwrap();
        let (_dir, path) = write_db(writer);
        let geo = GeoIp::open(&path).unwrap();
        assert_eq!(info(&geo, "198.51.100.1"), known("IE", "EU"));
    }

    /// The builder that `examples/make_test_geoip.rs` runs, included rather than spawned:
    /// see the header of `geoip/test_country.rs`.
    mod test_country {
        include!("../geoip/test_country.rs");
    }

    fn test_db_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-country.mmdb")
    }

    #[test]
    fn test_database_maps_the_four_documentation_prefixes() {
        let geo = GeoIp::open(&test_db_path()).unwrap();
        assert_eq!(geo.database_type(), "GeoIP2-Country");
        assert_eq!(geo.build_epoch(), test_country::BUILD_EPOCH_SECS);
        assert_eq!(info(&geo, "192.0.2.1"), known("JP", "AS"));
        assert_eq!(info(&geo, "192.0.2.255"), known("JP", "AS"));
        assert_eq!(info(&geo, "198.51.100.7"), known("PT", "EU"));
        assert_eq!(info(&geo, "203.0.113.200"), known("US", "NA"));
        assert_eq!(info(&geo, "2001:db8::1"), known("DE", "EU"));
        assert_eq!(info(&geo, "2001:db8:ffff::53"), known("DE", "EU"));
        assert_eq!(info(&geo, "::ffff:198.51.100.7"), known("PT", "EU"));
        for outside in [
            "192.0.3.1",
            "198.51.101.1",
            "10.0.0.1",
            "1.1.1.1",
            "2001:db9::1",
            "::1",
        ] {
            assert_eq!(
                geo.lookup(outside.parse().unwrap()),
                GeoInfo::default(),
                "{outside}"
            );
        }
    }

    #[test]
    fn test_database_uses_the_geoip2_country_schema() {
        // The full record, as other MaxMind readers (and `maxminddb::geoip2`) see it.
        let reader = Reader::open_readfile(test_db_path()).unwrap();
        let found = reader.lookup("198.51.100.1".parse().unwrap()).unwrap();
        let record = found
            .decode::<maxminddb::geoip2::Country<'_>>()
            .unwrap()
            .unwrap();
        assert_eq!(record.continent.code, Some("EU"));
        assert_eq!(record.continent.geoname_id, Some(6_255_148));
        assert_eq!(record.continent.names.english, Some("Europe"));
        assert_eq!(record.country.iso_code, Some("PT"));
        assert_eq!(record.country.geoname_id, Some(2_264_397));
        assert_eq!(record.country.names.english, Some("Portugal"));
        assert_eq!(record.country.is_in_european_union, Some(true));
        assert_eq!(record.registered_country.iso_code, Some("PT"));
        assert_eq!(reader.metadata().ip_version, 6);
    }

    #[test]
    fn test_database_is_reproducible() {
        let built = test_country::build_test_country_db().unwrap();
        assert_eq!(
            built,
            test_country::build_test_country_db().unwrap(),
            "nondeterministic"
        );
        let committed = std::fs::read(test_db_path()).unwrap();
        assert!(
            built == committed,
            "geoip/test-country.mmdb is stale: rebuild it with \
             `cargo run --example make_test_geoip -- geoip/test-country.mmdb`"
        );
    }

    /// Writes the database to a temporary file: (the directory to keep alive, the file).
    fn write_db(writer: mmdb_writer::Writer) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.mmdb");
        std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
        (dir, path)
    }

    fn pt_record() -> mmdb_writer::Value {
        use mmdb_writer::Value;
        Value::map([
            ("continent", Value::map([("code", Value::from("EU"))])),
            ("country", Value::map([("iso_code", Value::from("PT"))])),
        ])
    }

    #[test]
    fn verification_requires_a_description() {
        let mut writer = mmdb_writer::Writer::new("GeoIP2-Country");
        let net: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
        writer.insert_value(net, pt_record()).unwrap();
        let (_dir, path) = write_db(writer);
        let err = GeoIp::open(&path).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("description"), "{err}");
    }

    #[test]
    fn ipv4_only_database_answers_ipv6_as_unknown() {
        let mut writer = mmdb_writer::Writer::builder("GeoIP2-Country")
            .description(&[("en", "test")])
            .ip_version(mmdb_writer::IpVersion::V4)
            .build();
        let net: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
        writer.insert_value(net, pt_record()).unwrap();
        let (_dir, path) = write_db(writer);
        let geo = GeoIp::open(&path).unwrap();
        assert_eq!(info(&geo, "198.51.100.9"), known("PT", "EU"));
        assert_eq!(info(&geo, "::ffff:198.51.100.9"), known("PT", "EU"));
        assert_eq!(
            geo.lookup("2001:db8::1".parse().unwrap()),
            GeoInfo::default()
        );
    }
}
