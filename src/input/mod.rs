//! Input files (SPEC §4): a CSV with a header row, or a plain instance list.
//! Every problem is collected and reported at once with `file:line`, and a file
//! with any problem yields no instances at all, so nothing is ever sent for
//! half a file.
//!
//! Large files are never held in memory: [`validate`] streams the file once and
//! keeps only a duplicate index (a valid id packs exactly into a `u64`), then
//! [`Validated::read_chunks`] streams the unique rows again in chunks, for the
//! journal to import. Standard input is spooled to a temporary file for the
//! second pass.

mod bytes;
mod collector;
mod problem;
mod regions;
mod validate;

pub use crate::model::InstanceSpec;
pub use problem::{InputError, Problem};
pub use regions::{is_known_region, KNOWN_REGIONS};
pub use validate::{load, parse, validate, Defaults, Validated};

#[cfg(test)]
mod tests;
