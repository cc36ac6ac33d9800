//! The ADQL crate's one error type, split by whose fault it is.

/// Errors from parsing, planning and running ADQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The query is not valid ADQL (with line and column where the parser stopped).
    #[error("ADQL syntax error: {0}")]
    Syntax(String),
    /// Valid syntax that insitu refuses: not a single SELECT, or an unsupported construct.
    #[error("ADQL: {0}")]
    Unsupported(String),
    /// The query names a table, column or function that does not exist, or mixes types.
    #[error("ADQL: {0}")]
    Plan(String),
    /// A table could not be registered (file missing, malformed, unknown format).
    #[error("table {name}: {reason}")]
    Table { name: String, reason: String },
    /// Something failed while the query ran; not the user's fault.
    #[error("query failed: {0}")]
    Execution(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e {
            D::SQL(..) | D::Plan(..) | D::SchemaError(..) | D::NotImplemented(..) => {
                Error::Plan(e.strip_backtrace())
            }
            D::Context(_, inner) | D::Diagnostic(_, inner) => Error::from(*inner),
            other => Error::Execution(other.strip_backtrace()),
        }
    }
}
