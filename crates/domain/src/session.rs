//! A sign-in session: one family of refresh tokens. Each refresh rotates the family to a new
//! generation; presenting an older generation again is the standard sign of a stolen token, so
//! it ends the whole family. Logging out ends it too, and so does a password change made from
//! another session.

use crate::{Aggregate, DomainError, Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    pub id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub started_at: Option<DateTime<Utc>>,
    /// The generation of the only refresh token of the family that is still good.
    pub generation: u32,
    pub ended: Option<SessionEndReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    LoggedOut,
    /// A refresh token of an earlier generation came back: someone else holds the family.
    RefreshTokenReused,
    /// The user's password changed in another session.
    PasswordChanged,
}

/// Which sessions a password change left standing: those started after it, and the one it
/// was made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PasswordCutoff {
    pub changed_at: DateTime<Utc>,
    pub kept_session: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        session_id: Uuid,
        user_id: Uuid,
        started_at: DateTime<Utc>,
    },
    /// A refresh token of `generation` is presented; `cutoff` is the user's last password change.
    Refresh {
        generation: u32,
        cutoff: Option<PasswordCutoff>,
    },
    LogOut,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SessionEvent {
    SessionStarted {
        session_id: Uuid,
        user_id: Uuid,
        started_at: DateTime<Utc>,
    },
    SessionRefreshed {
        generation: u32,
    },
    SessionEnded {
        reason: SessionEndReason,
    },
}

impl Event for SessionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::SessionRefreshed { .. } => "SessionRefreshed",
            SessionEvent::SessionEnded { .. } => "SessionEnded",
        }
    }
}

impl Aggregate for Session {
    const STREAM_TYPE: &'static str = crate::names::stream_types::SESSION;
    type Command = SessionCommand;
    type Event = SessionEvent;

    /// An ended session decides nothing more: callers read `ended` from the state after.
    fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, DomainError> {
        if let SessionCommand::Start {
            session_id,
            user_id,
            started_at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::Conflict("the session already exists".into()));
            }
            return Ok(vec![SessionEvent::SessionStarted {
                session_id,
                user_id,
                started_at,
            }]);
        }
        if self.id.is_none() {
            return Err(DomainError::NotFound("session not found".into()));
        }
        if self.ended.is_some() {
            return Ok(vec![]);
        }
        let end = |reason| Ok(vec![SessionEvent::SessionEnded { reason }]);
        match command {
            SessionCommand::Start { .. } => unreachable!("handled above"),
            SessionCommand::LogOut => end(SessionEndReason::LoggedOut),
            SessionCommand::Refresh { generation, cutoff } => {
                let cut = cutoff.is_some_and(|cutoff| {
                    cutoff.kept_session != self.id && self.started_at.is_none_or(|at| at < cutoff.changed_at)
                });
                if cut {
                    end(SessionEndReason::PasswordChanged)
                } else if generation < self.generation {
                    end(SessionEndReason::RefreshTokenReused)
                } else if generation > self.generation {
                    Err(DomainError::Forbidden("the refresh token was never issued".into()))
                } else {
                    Ok(vec![SessionEvent::SessionRefreshed {
                        generation: generation + 1,
                    }])
                }
            }
        }
    }

    fn evolve(mut self, event: &SessionEvent) -> Self {
        match event {
            SessionEvent::SessionStarted {
                session_id,
                user_id,
                started_at,
            } => {
                self.id = Some(*session_id);
                self.user_id = Some(*user_id);
                self.started_at = Some(*started_at);
            }
            SessionEvent::SessionRefreshed { generation } => self.generation = *generation,
            SessionEvent::SessionEnded { reason } => self.ended = Some(*reason),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    fn started(at: DateTime<Utc>) -> (Uuid, SessionEvent) {
        let id = Uuid::new_v4();
        (
            id,
            SessionEvent::SessionStarted {
                session_id: id,
                user_id: Uuid::new_v4(),
                started_at: at,
            },
        )
    }

    #[test]
    fn each_refresh_rotates_and_an_old_generation_ends_the_family() {
        let (_, start) = started(Utc::now());
        let refresh = |generation| SessionCommand::Refresh {
            generation,
            cutoff: None,
        };
        let events = given_when::<Session>(std::slice::from_ref(&start), refresh(0)).unwrap();
        assert_eq!(events, vec![SessionEvent::SessionRefreshed { generation: 1 }]);
        let given = [start, events[0].clone()];
        assert_eq!(
            given_when::<Session>(&given, refresh(0)).unwrap(),
            vec![SessionEvent::SessionEnded {
                reason: SessionEndReason::RefreshTokenReused
            }]
        );
        assert!(matches!(
            given_when::<Session>(&given, refresh(7)),
            Err(DomainError::Forbidden(_))
        ));
        let ended: Vec<_> = given
            .iter()
            .cloned()
            .chain([SessionEvent::SessionEnded {
                reason: SessionEndReason::LoggedOut,
            }])
            .collect();
        assert_eq!(given_when::<Session>(&ended, refresh(1)).unwrap(), vec![]);
        assert_eq!(Session::fold(&ended).ended, Some(SessionEndReason::LoggedOut));
    }

    #[test]
    fn a_password_change_ends_older_sessions_but_the_one_it_was_made_from() {
        let now = Utc::now();
        let (id, start) = started(now - chrono::Duration::seconds(10));
        let refresh = |kept_session| SessionCommand::Refresh {
            generation: 0,
            cutoff: Some(PasswordCutoff {
                changed_at: now,
                kept_session,
            }),
        };
        assert_eq!(
            given_when::<Session>(std::slice::from_ref(&start), refresh(None)).unwrap(),
            vec![SessionEvent::SessionEnded {
                reason: SessionEndReason::PasswordChanged
            }]
        );
        assert_eq!(
            given_when::<Session>(std::slice::from_ref(&start), refresh(Some(id))).unwrap(),
            vec![SessionEvent::SessionRefreshed { generation: 1 }]
        );
        let (_, later) = started(now + chrono::Duration::seconds(1));
        assert_eq!(
            given_when::<Session>(&[later], refresh(None)).unwrap(),
            vec![SessionEvent::SessionRefreshed { generation: 1 }]
        );
    }
}
