//! The assertion types Promptcards evaluates, as promptfoo spells them. Adding one is a [`Kind`]
//! variant; the compiler then asks for its validation and its evaluation.

use std::fmt;
use std::str::FromStr;
use strum::IntoEnumIterator;

/// The assertion types promptfoo defines that Promptcards evaluates, each named (through strum)
/// exactly as promptfoo's configs and our stored events write it. The deterministic ones are
/// graded by [`crate::grade`]; the model-graded ones ([`Kind::is_model_graded`]) need a grading
/// model, which the runner calls with the prompts and parsers of `model_graded.rs`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::EnumString, strum::IntoStaticStr, strum::AsRefStr,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Kind {
    Equals,
    Contains,
    Icontains,
    ContainsAny,
    ContainsAll,
    IcontainsAny,
    IcontainsAll,
    StartsWith,
    Regex,
    IsJson,
    ContainsJson,
    Levenshtein,
    WordCount,
    Latency,
    Cost,
    LlmRubric,
    ModelGradedClosedqa,
    Factuality,
    /// promptfoo's older name for `factuality`, graded the same.
    ModelGradedFactuality,
    Similar,
    GEval,
}

impl Kind {
    /// The name promptfoo gives the type (`contains-any`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether a grading model (or an embedding model, for `similar`) judges this type.
    pub fn is_model_graded(self) -> bool {
        match self {
            Kind::LlmRubric
            | Kind::ModelGradedClosedqa
            | Kind::Factuality
            | Kind::ModelGradedFactuality
            | Kind::Similar
            | Kind::GEval => true,
            Kind::Equals
            | Kind::Contains
            | Kind::Icontains
            | Kind::ContainsAny
            | Kind::ContainsAll
            | Kind::IcontainsAny
            | Kind::IcontainsAll
            | Kind::StartsWith
            | Kind::Regex
            | Kind::IsJson
            | Kind::ContainsJson
            | Kind::Levenshtein
            | Kind::WordCount
            | Kind::Latency
            | Kind::Cost => false,
        }
    }

    /// Every type's name, in declaration order, for messages listing what is supported.
    pub fn names() -> Vec<&'static str> {
        Self::iter().map(Self::name).collect()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An assertion's `type`: a kind, negated by promptfoo's `not-` prefix (`not-contains`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssertionType {
    pub kind: Kind,
    pub negated: bool,
}

/// A `type` that names no [`Kind`], with or without `not-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownType(pub String);

impl fmt::Display for UnknownType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unknown assertion type: {}", self.0)
    }
}

impl std::error::Error for UnknownType {}

impl FromStr for AssertionType {
    type Err = UnknownType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (base, negated) = match s.strip_prefix("not-") {
            Some(base) => (base, true),
            None => (s, false),
        };
        let kind = base.parse().map_err(|_| UnknownType(s.to_owned()))?;
        Ok(AssertionType { kind, negated })
    }
}

impl fmt::Display for AssertionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("not-")?;
        }
        f.write_str(self.kind.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_promptfoos_and_read_back_identically() {
        assert_eq!(
            Kind::names(),
            [
                "equals",
                "contains",
                "icontains",
                "contains-any",
                "contains-all",
                "icontains-any",
                "icontains-all",
                "starts-with",
                "regex",
                "is-json",
                "contains-json",
                "levenshtein",
                "word-count",
                "latency",
                "cost",
                "llm-rubric",
                "model-graded-closedqa",
                "factuality",
                "model-graded-factuality",
                "similar",
                "g-eval",
            ]
        );
        for kind in Kind::iter() {
            for name in [kind.name().to_owned(), format!("not-{kind}")] {
                let parsed: AssertionType = name.parse().expect("a known type");
                assert_eq!(parsed.kind, kind);
                assert_eq!(parsed.to_string(), name);
            }
        }
    }

    #[test]
    fn unknown_types_are_named_whole() {
        for name in ["javascript", "not-rouge-n", "not-", "", "Contains", "not-not-contains"] {
            assert_eq!(name.parse::<AssertionType>(), Err(UnknownType(name.to_owned())));
        }
    }
}
