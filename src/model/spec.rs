//! One instance to encrypt, as the input asked for it: what `input` produces
//! and the journal imports.

use super::InstanceId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub id: InstanceId,
    pub region: String,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    /// Extra CSV columns, in file order.
    pub labels: Vec<(String, String)>,
    /// 1-based line in the input file.
    pub line: u64,
}

impl InstanceSpec {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
