//! A GeoIP2-Country-shaped `.mmdb` file written by the test itself, so
//! region rules can be tried against a real MaxMind database format.

use std::path::Path;

/// Write a country database to `path`: each `(network, ISO code)` pair
/// maps the network ("127.0.0.4/32", "198.51.100.0/24") to the country.
pub fn write_country_db(path: &Path, countries: &[(&str, &str)]) {
    let mut writer = mmdb_writer::Writer::new("GeoIP2-Country");
    for (network, code) in countries {
        let network: ipnet::IpNet = network.parse().expect("network");
        let record = serde_json::json!({
            "country": { "iso_code": code, "names": { "en": code } },
        });
        writer.insert(network, &record).expect("insert");
    }
    std::fs::write(path, writer.to_bytes().expect("mmdb bytes")).expect("write mmdb");
}
