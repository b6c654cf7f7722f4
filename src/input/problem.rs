//! What is wrong with an input, and where: every problem names its file and
//! line, and a file with any problem yields no instances at all.

use std::fmt;

/// One problem in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: u64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // The file as a whole (cannot open or read it): no line to name.
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// All the problems of a file; a file with any problem is rejected whole.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InputError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the input; nothing was sent:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i == 50 {
                writeln!(f, "  … and {} more", n - 50)?;
                break;
            }
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

pub(super) fn open_problem(file: &str, e: impl std::fmt::Display) -> InputError {
    InputError {
        problems: vec![Problem {
            file: file.to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        }],
    }
}
