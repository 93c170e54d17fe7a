//! What a reload attempt reports: the answer to `POST /reload`, the log
//! line's fields, and what `switchyard reload` reads back — one type on
//! both sides of the admin listener.

use std::time::Duration;

/// How a reload attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// A new table was applied.
    Success,
    /// The file's bytes equal the applied ones; nothing changed.
    Unchanged,
    /// The file was rejected; the old table keeps serving.
    Failure,
}

impl ReloadResult {
    /// Lowercase name, as in the metrics label and the JSON answer.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failure => "failure",
        }
    }
}

/// The outcome of one attempt, as logged and as answered to `POST /reload`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    /// How it ended.
    pub result: ReloadResult,
    /// Generation of the table serving after the attempt.
    pub generation: u64,
    /// Routes in the table serving after the attempt.
    #[serde(default)]
    pub routes: usize,
    /// Routes (`host/path` or `/path`) new in this table.
    #[serde(default)]
    pub added: Vec<String>,
    /// Routes gone from this table.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Routes whose settings changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Why the file was rejected, as text: one problem per line, as
    /// `switchyard check` prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The same problems, one object each (file, line, column, route,
    /// message), for tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ReportedError>,
    /// Problems found beyond the ones listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_errors: usize,
    /// Read + parse + build + swap.
    #[serde(skip)]
    pub duration: Duration,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One problem with a rejected file, where it is and which route it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedError {
    /// The file, as the proxy was told its path.
    pub file: String,
    /// Line, from 1; absent for a problem with the whole file (unreadable,
    /// empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The route (`route #N (/path)`), when the problem is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why the last attempt was rejected, kept for `/routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The text, one problem per line.
    pub text: String,
    /// The problems, one object each.
    pub errors: Vec<ReportedError>,
    /// Problems beyond those listed.
    pub omitted: usize,
}

impl Rejection {
    /// A file that could not be read at all.
    pub(crate) fn unreadable(file: &str, why: &dyn std::fmt::Display) -> Self {
        let message = why.to_string();
        Rejection {
            text: format!("{file}: {message}"),
            errors: vec![ReportedError {
                file: file.to_owned(),
                line: None,
                column: None,
                route: None,
                message,
            }],
            omitted: 0,
        }
    }

    /// A file the loader refused.
    pub(crate) fn invalid(errors: &switchyard_routes::ConfigErrors) -> Self {
        Rejection {
            text: errors.to_string(),
            errors: errors
                .errors
                .iter()
                .map(|e| ReportedError {
                    file: errors.source_name.clone(),
                    line: e.location.map(|l| l.line),
                    column: e.location.map(|l| l.column),
                    route: e.route.as_ref().map(ToString::to_string),
                    message: e.problem.to_string(),
                })
                .collect(),
            omitted: errors.omitted,
        }
    }
}
