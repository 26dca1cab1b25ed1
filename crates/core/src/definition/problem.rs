//! Problems in a definition (or any located document), and their bounded collector.
//!
//! A document can hold far more mistakes than anyone reads: a 1 MiB file of
//! half a million list items yields a problem per item. [`Problems`] counts every
//! problem but keeps only the first [`MAX_PROBLEMS_REPORTED`] in document order,
//! and [`Problems::into_vec`] ends the list with one entry saying how many more
//! there were, so every caller (CLI, HTTP APIs) reports a bounded list.

use super::source::SourceError;
use crate::limits::MAX_PROBLEMS_REPORTED;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// One problem in a definition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// JSON path of the offending value, e.g. `$.stages[0].actions[1].retryPolicies[0].MaxAttempts`.
    pub path: String,
    /// 1-based source line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The field name as the user spelled it (`MaxAttempts`, `maxAttempts`, ...).
    pub field: String,
    /// The offending value as written, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub message: String,
    /// What is allowed instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

/// `line 12: $.stages[0].actions[1].retryPolicies[0].MaxAttempts: <message> (got <value>; allowed: <allowed>)`,
/// leaving out the parts that are missing.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)?;
        match (&self.value, &self.allowed) {
            (Some(v), Some(a)) => write!(f, " (got {v}; allowed: {a})"),
            (Some(v), None) => write!(f, " (got {v})"),
            (None, Some(a)) => write!(f, " (allowed: {a})"),
            (None, None) => Ok(()),
        }
    }
}

impl Problem {
    /// A syntax error in the source text, at path `$` with its line (the column
    /// is in the message).
    pub fn from_source(e: &SourceError) -> Problem {
        Problem {
            path: "$".into(),
            line: Some(e.line),
            field: String::new(),
            value: None,
            message: format!("{} (column {})", e.message, e.column),
            allowed: None,
        }
    }

    /// The entry that ends a cut list: "and N more problems".
    pub fn more(omitted: usize) -> Problem {
        let s = if omitted == 1 { "" } else { "s" };
        Problem {
            path: "$".into(),
            line: None,
            field: String::new(),
            value: None,
            message: format!("and {omitted} more problem{s} (only the first {MAX_PROBLEMS_REPORTED} are reported)"),
            allowed: None,
        }
    }

    /// How many problems this entry stands for when it is the one [`Problem::more`] made.
    pub fn omitted(&self) -> Option<usize> {
        let n: usize = self.message.strip_prefix("and ")?.split(' ').next()?.parse().ok()?;
        (*self == Problem::more(n)).then_some(n)
    }
}

/// How many problems a list from [`Problems::into_vec`] stands for: its length,
/// counting a final "and N more problems" entry as N.
pub fn total_problems(problems: &[Problem]) -> usize {
    match problems.split_last() {
        Some((last, kept)) => kept.len() + last.omitted().unwrap_or(1),
        None => 0,
    }
}

/// Collects problems, counting all of them and keeping the first
/// [`MAX_PROBLEMS_REPORTED`] in document order: by line (problems without a line
/// last), and in the order they were reported within a line.
#[derive(Default)]
pub struct Problems {
    /// A max-heap on (line, report number): the latest kept problem is on top,
    /// ready to make room for an earlier one.
    kept: BinaryHeap<Ranked>,
    total: usize,
}

struct Ranked {
    rank: (Reverse<bool>, u32, usize),
    problem: Problem,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank.cmp(&other.rank)
    }
}

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        // Reverse(has a line): lines first, then problems without one.
        let rank = (Reverse(problem.line.is_some()), problem.line.unwrap_or(0), self.total);
        self.total += 1;
        if self.kept.len() == MAX_PROBLEMS_REPORTED {
            match self.kept.peek() {
                Some(latest) if latest.rank > rank => {
                    self.kept.pop();
                }
                _ => return,
            }
        }
        self.kept.push(Ranked { rank, problem });
    }

    /// Every problem pushed, kept or not.
    pub fn count(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The kept problems in document order, then "and N more problems" when
    /// some were left out.
    pub fn into_vec(self) -> Vec<Problem> {
        let omitted = self.total - self.kept.len();
        let mut out: Vec<Problem> = self.kept.into_sorted_vec().into_iter().map(|r| r.problem).collect();
        if omitted > 0 {
            out.push(Problem::more(omitted));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: Option<u32>, message: &str) -> Problem {
        Problem { path: "$.x".into(), line, field: "x".into(), value: None, message: message.into(), allowed: None }
    }

    #[test]
    fn few_problems_are_all_kept_in_document_order() {
        let mut p = Problems::default();
        for (line, m) in [(Some(3), "c"), (None, "z"), (Some(1), "a"), (Some(3), "d"), (Some(2), "b")] {
            p.push(at(line, m));
        }
        assert_eq!(p.count(), 5);
        let v = p.into_vec();
        let messages: Vec<&str> = v.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages, ["a", "b", "c", "d", "z"]);
        assert_eq!(total_problems(&v), 5);
    }

    #[test]
    fn many_problems_keep_the_first_and_count_the_rest() {
        let mut p = Problems::default();
        // Reported out of order: the earliest lines must survive.
        for line in (1..=1000u32).rev() {
            p.push(at(Some(line), &line.to_string()));
        }
        p.push(at(None, "no line"));
        assert_eq!(p.count(), 1001);
        let omitted = 1001 - MAX_PROBLEMS_REPORTED;
        let v = p.into_vec();
        assert_eq!(v.len(), MAX_PROBLEMS_REPORTED + 1);
        let lines: Vec<u32> = v[..MAX_PROBLEMS_REPORTED].iter().map(|p| p.line.unwrap()).collect();
        assert_eq!(lines, (1..=MAX_PROBLEMS_REPORTED as u32).collect::<Vec<_>>());
        let last = v.last().unwrap();
        let message = format!("and {omitted} more problems (only the first {MAX_PROBLEMS_REPORTED} are reported)");
        assert_eq!(last.message, message);
        assert_eq!(last.to_string(), format!("$: {message}"));
        assert_eq!(last.omitted(), Some(omitted));
        assert_eq!(total_problems(&v), 1001);
    }

    #[test]
    fn exactly_the_limit_has_no_final_entry_and_one_more_is_singular() {
        let mut p = Problems::default();
        (0..MAX_PROBLEMS_REPORTED).for_each(|_| p.push(at(Some(1), "same line")));
        let mut one_more = Problems::default();
        (0..=MAX_PROBLEMS_REPORTED).for_each(|i| one_more.push(at(Some(1), &i.to_string())));
        let v = p.into_vec();
        assert_eq!(v.len(), MAX_PROBLEMS_REPORTED);
        assert!(v.iter().all(|p| p.omitted().is_none()));
        let v = one_more.into_vec();
        // Same line: report order decides, so the last one reported is left out.
        assert_eq!(v[MAX_PROBLEMS_REPORTED - 1].message, (MAX_PROBLEMS_REPORTED - 1).to_string());
        assert!(v.last().unwrap().message.starts_with("and 1 more problem (only the first"), "{:?}", v.last());
    }

    #[test]
    fn an_ordinary_problem_is_not_a_count() {
        assert_eq!(at(None, "and 5 more problems").omitted(), None);
        assert_eq!(total_problems(&[at(Some(1), "x")]), 1);
        assert_eq!(total_problems(&[]), 0);
    }
}
