//! `InstanceId`: a TencentDB for MySQL master instance id, validated once where
//! it enters (input, journal rows), so nothing downstream handles a bad one.

use std::fmt;
use std::str::FromStr;

/// `cdb-` followed by 8 lower-case ASCII letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a TencentDB for MySQL instance id (expected cdb- and 8 lower-case letters or digits)")]
pub struct InvalidInstanceId(pub String);

impl InstanceId {
    pub const PREFIX: &'static str = "cdb-";

    /// Whether `s` has the shape of an instance id.
    pub fn is_valid(s: &str) -> bool {
        s.len() == 12
            && s.starts_with(Self::PREFIX)
            && s[4..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    pub fn parse(s: &str) -> Result<InstanceId, InvalidInstanceId> {
        if Self::is_valid(s) {
            Ok(InstanceId(s.to_string()))
        } else {
            Err(InvalidInstanceId(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 8 characters after `cdb-` packed into a `u64`: a compact, collision-free
    /// key for duplicate detection over millions of ids.
    pub fn packed(&self) -> u64 {
        let b = self.0.as_bytes();
        u64::from_be_bytes(b[4..12].try_into().expect("a valid id has 12 bytes"))
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstanceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceId::parse(s)
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InvalidInstanceId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if Self::is_valid(&s) {
            Ok(InstanceId(s))
        } else {
            Err(InvalidInstanceId(s))
        }
    }
}

impl<'de> serde::Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        InstanceId::try_from(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for InstanceId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for InstanceId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_shape_is_an_instance_id() {
        for ok in ["cdb-abcd1234", "cdb-00000000", "cdb-zzzzzzzz"] {
            assert_eq!(InstanceId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "cdb-",
            "cdb-abcd123",
            "cdb-abcd12345",
            "cdb-ABCD1234",
            "cdbro-abcd1234",
            "CDB-abcd1234",
            "cdb-abcd-123",
            "cdb_abcd1234",
            "cdb-abcd123é",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn packed_keys_differ_for_different_ids() {
        let a = InstanceId::parse("cdb-abcd1234").unwrap();
        let b = InstanceId::parse("cdb-abcd1235").unwrap();
        assert_ne!(a.packed(), b.packed());
        assert_eq!(
            a.packed(),
            InstanceId::parse("cdb-abcd1234").unwrap().packed()
        );
    }

    #[test]
    fn deserializing_checks_the_shape() {
        let ok: InstanceId = serde_json::from_str("\"cdb-abcd1234\"").unwrap();
        assert_eq!(ok, "cdb-abcd1234");
        assert!(serde_json::from_str::<InstanceId>("\"cdb-nope\"").is_err());
    }
}
