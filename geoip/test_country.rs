// Builds `geoip/test-country.mmdb`, the small GeoIP2-Country database the tests use
// (SPEC §8).
//
// This file is shared by `include!` between `examples/make_test_geoip.rs`, which writes the
// file, and the tests in `src/geoip.rs`, which check that the committed file is exactly what
// this code builds. `mmdb-writer` is a dev-dependency, so the builder cannot live in the
// library; an include keeps one copy of the data without spawning the example binary from
// a test (which would need a second cargo invocation and a built example). Being included,
// it has no `//!` header and no `use` of anything but `mmdb_writer`, `ipnet` and `serde`.

/// Fixed `build_epoch` (2025-01-01T00:00:00Z), so the bytes are reproducible.
pub(crate) const BUILD_EPOCH_SECS: u64 = 1_735_689_600;

/// The networks and what they map to: (network, country, country name, country geoname id,
/// continent, continent name, continent geoname id, in the EU).
pub(crate) const ENTRIES: [(&str, &str, &str, u32, &str, &str, u32, bool); 4] = [
    ("192.0.2.0/24", "JP", "Japan", 1_861_060, "AS", "Asia", 6_255_147, false),
    ("198.51.100.0/24", "PT", "Portugal", 2_264_397, "EU", "Europe", 6_255_148, true),
    ("203.0.113.0/24", "US", "United States", 6_252_001, "NA", "North America", 6_255_149, false),
    ("2001:db8::/32", "DE", "Germany", 2_921_044, "EU", "Europe", 6_255_148, true),
];

/// `names` in the GeoIP2 schema: language code to name (English only here).
#[derive(serde::Serialize)]
struct Names<'a> {
    en: &'a str,
}

/// `continent` in the GeoIP2-Country schema.
#[derive(serde::Serialize)]
struct Continent<'a> {
    code: &'a str,
    geoname_id: u32,
    names: Names<'a>,
}

/// `country` and `registered_country` in the GeoIP2-Country schema. As in MaxMind's files,
/// `is_in_european_union` is present only when true.
#[derive(serde::Serialize)]
struct Country<'a> {
    geoname_id: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_in_european_union: bool,
    iso_code: &'a str,
    names: Names<'a>,
}

/// One record of a GeoIP2-Country database.
#[derive(serde::Serialize)]
struct CountryRecord<'a> {
    continent: Continent<'a>,
    country: Country<'a>,
    registered_country: Country<'a>,
}

/// The bytes of `geoip/test-country.mmdb`: an IPv6 tree (`ip_version` 6) with IPv4 stored
/// under `::/96` and aliased from `::ffff:0:0/96`, so IPv4 and IPv4-mapped lookups work.
pub(crate) fn build_test_country_db() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(BUILD_EPOCH_SECS);
    let mut writer = mmdb_writer::Writer::builder("GeoIP2-Country")
        .description(&[("en", "dnsgate test database: documentation prefixes only, not real data")])
        .languages(["en"])
        .ip_version(mmdb_writer::IpVersion::V6)
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Enabled)
        .build_epoch(epoch)
        .build();
    for (net, iso, name, id, continent, continent_name, continent_id, eu) in ENTRIES {
        let country = || Country {
            geoname_id: id,
            is_in_european_union: eu,
            iso_code: iso,
            names: Names { en: name },
        };
        let record = CountryRecord {
            continent: Continent {
                code: continent,
                geoname_id: continent_id,
                names: Names { en: continent_name },
            },
            country: country(),
            registered_country: country(),
        };
        writer.insert(net.parse::<ipnet::IpNet>()?, &record)?;
    }
    Ok(writer.to_bytes()?)
}
