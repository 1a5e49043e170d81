//! A person who signs in. Their email is unique; the service reserves it when registering.

use crate::error::Problems;
use crate::session::PasswordCutoff;
use crate::{Aggregate, DomainError, Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub id: Option<Uuid>,
    pub email: String,
    /// An argon2 PHC string; never the password.
    pub password_hash: String,
    /// The last password change: sessions older than it, but the one it was made from, ended.
    pub password_cutoff: Option<PasswordCutoff>,
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    Register {
        user_id: Uuid,
        email: String,
        password_hash: String,
    },
    /// The caller has proved the current password; `kept_session` is the session it came from.
    ChangePassword {
        password_hash: String,
        changed_at: DateTime<Utc>,
        kept_session: Option<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    UserRegistered {
        user_id: Uuid,
        email: String,
        password_hash: String,
    },
    PasswordChanged {
        password_hash: String,
        changed_at: DateTime<Utc>,
        kept_session: Option<Uuid>,
    },
}

impl Event for UserEvent {
    fn event_type(&self) -> &'static str {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
        }
    }
}

impl Aggregate for User {
    const STREAM_TYPE: &'static str = crate::names::stream_types::USER;
    type Command = UserCommand;
    type Event = UserEvent;

    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                password_hash,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the user already exists".into()));
                }
                Ok(vec![UserEvent::UserRegistered {
                    user_id,
                    email: normalize_email(&email)?,
                    password_hash,
                }])
            }
            UserCommand::ChangePassword {
                password_hash,
                changed_at,
                kept_session,
            } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("user not found".into()));
                }
                Ok(vec![UserEvent::PasswordChanged {
                    password_hash,
                    changed_at,
                    kept_session,
                }])
            }
        }
    }

    fn evolve(mut self, event: &UserEvent) -> Self {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                password_hash,
            } => {
                self.id = Some(*user_id);
                self.email = email.clone();
                self.password_hash = password_hash.clone();
            }
            UserEvent::PasswordChanged {
                password_hash,
                changed_at,
                kept_session,
            } => {
                self.password_hash = password_hash.clone();
                self.password_cutoff = Some(PasswordCutoff {
                    changed_at: *changed_at,
                    kept_session: *kept_session,
                });
            }
        }
        self
    }
}

/// Lower-cases and checks an email address. Deliberately loose: one `@`, something on each side,
/// no whitespace, at most 254 characters. Deliverability is not ours to judge.
pub fn normalize_email(email: &str) -> Result<String, DomainError> {
    let email = email.trim().to_lowercase();
    let mut problems = Problems::default();
    let valid_shape = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
        }
        None => false,
    };
    if email.chars().count() > 254 {
        problems.add("email", "must be at most 254 characters");
    } else if !valid_shape || email.chars().any(char::is_whitespace) {
        problems.add("email", "must be an email address such as ada@example.com");
    }
    problems.into_result().map(|()| email)
}

/// Passwords are 8 to 256 characters; anything else about them is the user's business.
pub fn check_password(password: &str) -> Result<(), DomainError> {
    let mut problems = Problems::default();
    let len = password.chars().count();
    if !(8..=256).contains(&len) {
        problems.add("password", "must be 8 to 256 characters");
    }
    problems.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    #[test]
    fn registering_normalizes_the_email() {
        let id = Uuid::new_v4();
        let events = given_when::<User>(
            &[],
            UserCommand::Register {
                user_id: id,
                email: " Ada@Example.COM ".into(),
                password_hash: "$argon2id$x".into(),
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::UserRegistered {
                user_id: id,
                email: "ada@example.com".into(),
                password_hash: "$argon2id$x".into()
            }]
        );
    }

    #[test]
    fn a_user_registers_once() {
        let given = [UserEvent::UserRegistered {
            user_id: Uuid::new_v4(),
            email: "a@b.co".into(),
            password_hash: "h".into(),
        }];
        let err = given_when::<User>(
            &given,
            UserCommand::Register {
                user_id: Uuid::new_v4(),
                email: "a@b.co".into(),
                password_hash: "h".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
    }

    #[test]
    fn malformed_emails_and_short_passwords_are_rejected() {
        for bad in ["", "ada", "ada@", "@example.com", "a b@example.com", "ada@localhost"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }
}
