//! The crate's errors: a file that is not nginx syntax, and generated
//! output that does not load (a bug here, never the operator's).

use switchyard_routes::ConfigErrors;

/// Why a file is not nginx configuration syntax, and where. Both the lexer
/// and the parser report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    /// Line, counting from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Why [`crate::import`] produced no translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The text is not nginx configuration syntax.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The generated routes.yaml does not pass the loader. Each route was
    /// checked alone, so this is a bug in this crate, never the operator's.
    #[error("the generated routes.yaml does not pass `switchyard check`")]
    Unloadable(#[source] ConfigErrors),
}
