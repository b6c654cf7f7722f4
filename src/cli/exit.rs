//! Exit codes (SPEC §3), in one place.

/// Every instance `encrypted` or `already_encrypted`.
pub const OK: u8 = 0;
/// Some instance `failed` or left non-terminal.
pub const SOME_FAILED: u8 = 1;
/// Bad usage or bad input; nothing was sent.
pub const USAGE: u8 = 2;
/// Account-wide stop (AuthFailure, missing credentials).
pub const ACCOUNT: u8 = 3;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: u8 = 130;
