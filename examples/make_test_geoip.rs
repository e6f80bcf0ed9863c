//! Writes the project's test GeoIP database (SPEC §8), reproducibly:
//!
//! ```text
//! cargo run --example make_test_geoip -- geoip/test-country.mmdb
//! ```
//!
//! The data and the builder live in `geoip/test_country.rs`, which the tests in
//! `src/geoip.rs` include too, so a test fails if the committed file drifts from it.

#![allow(clippy::print_stdout)]

mod test_country {
    include!("../geoip/test_country.rs");
}

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("geoip/test-country.mmdb"),
        PathBuf::from,
    );
    let bytes = match test_country::build_test_country_db() {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("make_test_geoip: cannot build the database: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(&path, &bytes) {
        eprintln!("make_test_geoip: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
    ExitCode::SUCCESS
}
