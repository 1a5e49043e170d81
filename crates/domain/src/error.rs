use serde::Serialize;

/// One invalid field of a command, named the way the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a command may not happen. Services map each variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The command is malformed; every offending field is listed.
    #[error("the request is invalid: {}", summary(.0))]
    Invalid(Vec<FieldError>),
    /// The actor's role does not allow this command.
    #[error("{0}")]
    Forbidden(String),
    /// The command names something that does not exist (or no longer does).
    #[error("{0}")]
    NotFound(String),
    /// The command is well formed but the current state refuses it.
    #[error("{0}")]
    Conflict(String),
    /// The client edited an older version of a card than the current one.
    #[error("the card is at version {current}, not {expected}")]
    VersionMismatch { expected: u32, current: u32 },
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field errors so a command reports all its problems at once.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self.0))
        }
    }
}

impl Extend<assertions::Problem> for Problems {
    fn extend<T: IntoIterator<Item = assertions::Problem>>(&mut self, problems: T) {
        for problem in problems {
            self.add(problem.field, problem.message);
        }
    }
}
