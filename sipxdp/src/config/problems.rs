//! Problems found in a configuration, each located at `origin:line:column` so that an
//! operator (or an editor jumping to compiler-style locations) finds the offending value.

use std::{error::Error, fmt, ops::Range};

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the text came from: the file's path, or what [`super::parse`] was told.
    pub origin: String,
    /// 1-based line of the offending value; 0 when the problem concerns the whole file
    /// (it cannot be read, is unsafe, or lacks a required section).
    pub line: usize,
    /// 1-based column of the offending value, counted in characters; 0 with `line` 0.
    pub column: usize,
    /// What is wrong, naming the key or value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            let Self {
                origin,
                line,
                column,
                message,
            } = self;
            write!(f, "{origin}:{line}:{column}: {message}")
        }
    }
}

/// Why a configuration was refused: every problem found (at least one), sorted by
/// position, whole-file problems first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    problems: Vec<Problem>,
}

impl ConfigErrors {
    /// A single problem that concerns the whole file.
    pub(super) fn whole_file(origin: &str, message: String) -> Self {
        Self {
            problems: vec![Problem {
                origin: origin.to_owned(),
                line: 0,
                column: 0,
                message,
            }],
        }
    }

    /// The problems, sorted by position.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

/// One problem a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Error for ConfigErrors {}

/// Collects the problems of one text while it is checked, and turns the byte offsets
/// `toml` reports into lines and columns when done. Both take time linear in the text,
/// however many problems there are: `parse` must stay fast on any input.
pub(super) struct Problems<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// Each problem's byte offset (`None` for the whole file) and message.
    found: Vec<(Option<usize>, String)>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str) -> Self {
        let newlines = text.match_indices('\n').map(|(offset, _)| offset + 1);
        Self {
            origin,
            text,
            line_starts: std::iter::once(0).chain(newlines).collect(),
            found: Vec::new(),
        }
    }

    /// Records a problem with the value at `span` (byte offsets into the text).
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push((Some(span.start), message.into()));
    }

    /// Records a problem that concerns the whole file.
    pub(super) fn whole_file(&mut self, message: impl Into<String>) {
        self.found.push((None, message.into()));
    }

    /// The 1-based line of `span`, to point from one problem to a related value.
    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        self.line_starts
            .partition_point(|&start| start <= span.start)
    }

    /// `value` if no problem was found, else every problem found.
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// The problems found; for callers that have just recorded one.
    pub(super) fn into_errors(self) -> ConfigErrors {
        let mut found = self.found;
        // Whole-file problems (`None`) first; equal offsets keep their order.
        found.sort_by_key(|(offset, _)| *offset);
        let mut cursor = Cursor::new(self.text);
        let problems = found
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = offset.map_or((0, 0), |offset| cursor.advance_to(offset));
                Problem {
                    origin: self.origin.to_owned(),
                    line,
                    column,
                    message,
                }
            })
            .collect();
        ConfigErrors { problems }
    }
}

/// Walks a text forwards, keeping track of the 1-based line and column (in characters).
struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
    column: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    /// The line and column of byte `offset`, which must not lie before the last one asked
    /// for (it then stays there). Total: an offset past the end or inside a character is
    /// moved back to the nearest character boundary.
    fn advance_to(&mut self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        for c in self
            .text
            .get(self.offset..offset)
            .unwrap_or_default()
            .chars()
        {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = self.offset.max(offset);
        (self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\nçd\n";
        let mut cursor = Cursor::new(text);
        assert_eq!(cursor.advance_to(0), (1, 1));
        assert_eq!(cursor.advance_to(1), (1, 2));
        assert_eq!(cursor.advance_to(3), (2, 1));
        // Inside the two-byte 'ç'.
        assert_eq!(cursor.advance_to(4), (2, 1));
        // 'd' follows 'ç'.
        assert_eq!(cursor.advance_to(5), (2, 2));
        // Past the end.
        assert_eq!(cursor.advance_to(99), (3, 1));
    }

    #[test]
    fn line_of_a_span() {
        let problems = Problems::new("f.toml", "a\nb\n\nc");
        let lines: Vec<usize> = (0..8)
            .map(|offset| problems.line_of(&(offset..offset)))
            .collect();
        assert_eq!(lines, [1, 1, 2, 2, 3, 4, 4, 4]);
    }

    #[test]
    fn display_sorts_by_position() {
        let mut problems = Problems::new("f.toml", "a\nb\n");
        problems.at(2..3, "second");
        problems.at(0..1, "first");
        problems.whole_file("file");
        let errors = problems.finish(()).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "f.toml: file\nf.toml:1:1: first\nf.toml:2:1: second"
        );
    }
}
