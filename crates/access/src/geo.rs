//! The client's country from a MaxMind GeoIP2 / GeoLite2 database (a
//! `.mmdb` file, read once at start): the ISO code of the country the
//! address is in, else of the country it is registered in.

use maxminddb::{Reader, geoip2};
use std::net::IpAddr;
use std::path::Path;

/// A `.mmdb` file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GeoIP database {file}: {reason}")]
pub struct GeoIpError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub reason: String,
}

/// A country database in memory.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoIp {
    /// Read the database at `path`.
    pub fn load(path: &Path) -> Result<Self, GeoIpError> {
        let wrong = |reason: String| GeoIpError {
            file: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| wrong(format!("cannot read it: {e}")))?;
        let reader = Reader::from_source(bytes)
            .map_err(|e| wrong(format!("not a MaxMind database: {e}")))?;
        Ok(Self { reader })
    }

    /// The two-letter country code of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        let record: geoip2::Country<'_> = found.decode().ok()??;
        record
            .country
            .iso_code
            .or(record.registered_country.iso_code)
            .filter(|code| code.len() == 2)
            .map(str::to_owned)
    }
}
