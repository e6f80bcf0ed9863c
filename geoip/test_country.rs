// Builds `geoip/test-country.mmdb`, the small GeoIP2-Country database the tests use
// (SPEC §8).
//
// This file is shared by `include!` between `examples/make_test_geoip.rs`, which writes the
// file, and the tests in `src/geoip.rs`, which check that the committed file is exactly what
// this code builds. `mmdb-writer` is a dev-dependency, so the builder cannot live in the
// library; an include keeps one copy of the data without spawning the example binary from
// a test (which would need a second cargo invocation and a built example). Being included,
// it has no `//!` header and names everything by its full path.

/// Fixed `build_epoch` (2025-01-01T00:00:00Z), so the bytes are reproducible.
pub(crate) const BUILD_EPOCH_SECS: u64 = 1_735_689_600;

/// One network of the test database and the country it maps to.
pub(crate) struct Entry {
    /// The network (documentation prefixes only: RFC 5737, RFC 3849).
    pub(crate) network: &'static str,
    /// `country.iso_code`, `country.names.en`, `country.geoname_id`.
    pub(crate) country: (&'static str, &'static str, u32),
    /// `continent.code`, `continent.names.en`, `continent.geoname_id`.
    pub(crate) continent: (&'static str, &'static str, u32),
    /// `country.is_in_european_union`.
    pub(crate) is_in_eu: bool,
}

/// The contents of the test database (SPEC §8), with GeoNames ids as in MaxMind's data.
pub(crate) const ENTRIES: [Entry; 4] = [
    Entry {
        network: "192.0.2.0/24",
        country: ("JP", "Japan", 1_861_060),
        continent: ("AS", "Asia", 6_255_147),
        is_in_eu: false,
    },
    Entry {
        network: "198.51.100.0/24",
        country: ("PT", "Portugal", 2_264_397),
        continent: ("EU", "Europe", 6_255_148),
        is_in_eu: true,
    },
    Entry {
        network: "203.0.113.0/24",
        country: ("US", "United States", 6_252_001),
        continent: ("NA", "North America", 6_255_149),
        is_in_eu: false,
    },
    Entry {
        network: "2001:db8::/32",
        country: ("DE", "Germany", 2_921_044),
        continent: ("EU", "Europe", 6_255_148),
        is_in_eu: true,
    },
];

/// `names` in the GeoIP2 schema: language code to name (English only here).
#[derive(serde::Serialize)]
struct Names {
    en: &'static str,
}

/// `continent` in the GeoIP2-Country schema.
#[derive(serde::Serialize)]
struct Continent {
    code: &'static str,
    geoname_id: u32,
    names: Names,
}

/// `country` and `registered_country` in the GeoIP2-Country schema. As in MaxMind's files,
/// `is_in_european_union` is present only when true.
#[derive(serde::Serialize)]
struct Country {
    geoname_id: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_in_european_union: bool,
    iso_code: &'static str,
    names: Names,
}

/// One record of a GeoIP2-Country database.
#[derive(serde::Serialize)]
struct CountryRecord {
    continent: Continent,
    country: Country,
    registered_country: Country,
}

impl Entry {
    fn record(&self) -> CountryRecord {
        let (iso_code, name, geoname_id) = self.country;
        let country = || Country {
            geoname_id,
            is_in_european_union: self.is_in_eu,
            iso_code,
            names: Names { en: name },
        };
        let (code, name, geoname_id) = self.continent;
        CountryRecord {
            continent: Continent {
                code,
                geoname_id,
                names: Names { en: name },
            },
            country: country(),
            registered_country: country(),
        }
    }
}

/// The bytes of `geoip/test-country.mmdb`: an IPv6 tree (`ip_version` 6) with IPv4 stored
/// under `::/96` and aliased from `::ffff:0:0/96`, so IPv4 and IPv4-mapped lookups work.
pub(crate) fn build_test_country_db() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(BUILD_EPOCH_SECS);
    let mut writer = mmdb_writer::Writer::builder("GeoIP2-Country")
        .description(&[(
            "en",
            "dnsgate test database: documentation prefixes only, not real data",
        )])
        .languages(["en"])
        .ip_version(mmdb_writer::IpVersion::V6)
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Enabled)
        .build_epoch(epoch)
        .build();
    for entry in &ENTRIES {
        writer.insert(entry.network.parse::<ipnet::IpNet>()?, &entry.record())?;
    }
    Ok(writer.to_bytes()?)
}
