//! The cloud API actions fleetcrypt calls (reference §4–§5).

use super::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The one write: cannot be undone.
    OpenDBInstanceEncryption,
    DescribeDBInstanceInfo,
    DescribeDBFeatures,
    DescribeDBInstances,
    /// KMS.
    DescribeKey,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::OpenDBInstanceEncryption,
        Action::DescribeDBInstanceInfo,
        Action::DescribeDBFeatures,
        Action::DescribeDBInstances,
        Action::DescribeKey,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::OpenDBInstanceEncryption => "OpenDBInstanceEncryption",
            Action::DescribeDBInstanceInfo => "DescribeDBInstanceInfo",
            Action::DescribeDBFeatures => "DescribeDBFeatures",
            Action::DescribeDBInstances => "DescribeDBInstances",
            Action::DescribeKey => "DescribeKey",
        }
    }

    /// Whether the call changes anything on the server (and so must be write-ahead
    /// journaled and never repeated blind).
    pub fn is_write(self) -> bool {
        self == Action::OpenDBInstanceEncryption
    }
}

text_enum!(Action, UnknownAction, "action");
