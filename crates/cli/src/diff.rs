//! `promptcards diff`: what changed between two versions of a prompt card.

use crate::output::json_line;
use crate::{Outcome, Settings};
use anyhow::{bail, Context};
use clap::Args;
use domain::card::{CardContent, PromptCard};
use domain::template::Variable;
use domain::Aggregate;
use event_store::fold_recorded;
use serde_json::{json, Value};
use similar::{ChangeTag, TextDiff};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The prompt card's id.
    pub card: Uuid,
    /// The older version.
    pub v1: u32,
    /// The newer version.
    pub v2: u32,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, args: DiffArgs) -> anyhow::Result<Outcome> {
    let store = settings.store().await?;
    let events = store.read_stream(args.card, 0).await?;
    match events.first() {
        None => bail!("no prompt card {}", args.card),
        Some(first) if first.stream_type != PromptCard::STREAM_TYPE => {
            bail!("{} is a {} stream, not a prompt card", args.card, first.stream_type)
        }
        Some(_) => {}
    }
    let card: PromptCard = fold_recorded(&events)?;
    let version = |v: u32| {
        card.at_version(v)
            .map(|v| &v.content)
            .with_context(|| format!("card {} has versions 1 to {}, not {v}", args.card, card.version()))
    };
    let (old, new) = (version(args.v1)?, version(args.v2)?);
    let changes = Changes::between(old, new, args.v1, args.v2);
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &changes.to_json(args.card, args.v1, args.v2))?;
    } else {
        changes.print(&mut out, args.card, args.v1, args.v2, std::io::stdout().is_terminal())?;
    }
    Ok(Outcome::Done)
}

/// What differs between two versions' content.
struct Changes {
    title: Option<(String, String)>,
    description: Option<(String, String)>,
    tags_added: Vec<String>,
    tags_removed: Vec<String>,
    variables_added: Vec<Variable>,
    variables_removed: Vec<Variable>,
    variables_changed: Vec<(Variable, Variable)>,
    /// A unified line diff, empty when the templates are equal.
    template: String,
}

impl Changes {
    fn between(old: &CardContent, new: &CardContent, v1: u32, v2: u32) -> Self {
        let changed = |a: &String, b: &String| (a != b).then(|| (a.clone(), b.clone()));
        let olds: BTreeMap<&str, &Variable> = old.variables.iter().map(|v| (v.name.as_str(), v)).collect();
        let news: BTreeMap<&str, &Variable> = new.variables.iter().map(|v| (v.name.as_str(), v)).collect();
        let diff = TextDiff::from_lines(&old.template, &new.template);
        let template = if old.template == new.template {
            String::new()
        } else {
            diff.unified_diff()
                .context_radius(3)
                .missing_newline_hint(false)
                .header(&format!("template v{v1}"), &format!("template v{v2}"))
                .to_string()
        };
        Self {
            title: changed(&old.title, &new.title),
            description: changed(&old.description, &new.description),
            tags_added: new.tags.iter().filter(|t| !old.tags.contains(t)).cloned().collect(),
            tags_removed: old.tags.iter().filter(|t| !new.tags.contains(t)).cloned().collect(),
            variables_added: news
                .iter()
                .filter(|(n, _)| !olds.contains_key(*n))
                .map(|(_, v)| (*v).clone())
                .collect(),
            variables_removed: olds
                .iter()
                .filter(|(n, _)| !news.contains_key(*n))
                .map(|(_, v)| (*v).clone())
                .collect(),
            variables_changed: olds
                .iter()
                .filter_map(|(n, a)| news.get(n).filter(|b| a != *b).map(|b| ((*a).clone(), (*b).clone())))
                .collect(),
            template,
        }
    }

    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.tags_added.is_empty()
            && self.tags_removed.is_empty()
            && self.variables_added.is_empty()
            && self.variables_removed.is_empty()
            && self.variables_changed.is_empty()
            && self.template.is_empty()
    }

    fn to_json(&self, card: Uuid, v1: u32, v2: u32) -> Value {
        let pair = |p: &Option<(String, String)>| p.as_ref().map(|(a, b)| json!({ "from": a, "to": b }));
        json!({
            "card_id": card,
            "from_version": v1,
            "to_version": v2,
            "changed": !self.is_empty(),
            "title": pair(&self.title),
            "description": pair(&self.description),
            "tags": { "added": self.tags_added, "removed": self.tags_removed },
            "variables": {
                "added": self.variables_added,
                "removed": self.variables_removed,
                "changed": self.variables_changed.iter().map(|(a, b)| json!({ "name": a.name, "from": a, "to": b })).collect::<Vec<_>>(),
            },
            "template": (!self.template.is_empty()).then_some(&self.template),
        })
    }

    fn print(&self, out: &mut impl Write, card: Uuid, v1: u32, v2: u32, color: bool) -> std::io::Result<()> {
        writeln!(out, "card {card}: version {v1} -> version {v2}")?;
        if self.is_empty() {
            return writeln!(out, "no changes");
        }
        if let Some((a, b)) = &self.title {
            writeln!(out, "title:       {a:?} -> {b:?}")?;
        }
        if let Some((a, b)) = &self.description {
            writeln!(out, "description: {a:?} -> {b:?}")?;
        }
        if !self.tags_added.is_empty() || !self.tags_removed.is_empty() {
            let tags: Vec<String> = self
                .tags_added
                .iter()
                .map(|t| format!("+{t}"))
                .chain(self.tags_removed.iter().map(|t| format!("-{t}")))
                .collect();
            writeln!(out, "tags:        {}", tags.join(" "))?;
        }
        let mut variables: Vec<String> = Vec::new();
        variables.extend(self.variables_added.iter().map(|v| format!("+ {}", describe(v))));
        variables.extend(self.variables_removed.iter().map(|v| format!("- {}", describe(v))));
        variables.extend(
            self.variables_changed
                .iter()
                .map(|(a, b)| format!("~ {} -> {}", describe(a), describe(b))),
        );
        for (i, line) in variables.iter().enumerate() {
            writeln!(out, "{}{line}", if i == 0 { "variables:   " } else { "             " })?;
        }
        if !self.template.is_empty() {
            writeln!(out, "template:")?;
            for line in self.template.lines() {
                let tag = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => Some(ChangeTag::Insert),
                    Some('-') if !line.starts_with("---") => Some(ChangeTag::Delete),
                    _ => None,
                };
                match (color, tag) {
                    (true, Some(ChangeTag::Insert)) => writeln!(out, "\x1b[32m{line}\x1b[0m")?,
                    (true, Some(ChangeTag::Delete)) => writeln!(out, "\x1b[31m{line}\x1b[0m")?,
                    _ => writeln!(out, "{line}")?,
                }
            }
        }
        Ok(())
    }
}

/// `name (type, required, default: ..., "description")`.
pub(crate) fn describe(variable: &Variable) -> String {
    let mut parts = vec![variable.kind.as_str().to_owned()];
    parts.push(if variable.required { "required" } else { "optional" }.to_owned());
    if let Some(default) = &variable.default {
        parts.push(format!("default {default}"));
    }
    if let Some(description) = &variable.description {
        parts.push(format!("{description:?}"));
    }
    format!("{} ({})", variable.name, parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::template::VarType;

    fn variable(name: &str, required: bool) -> Variable {
        Variable {
            name: name.into(),
            kind: VarType::String,
            description: None,
            default: None,
            required,
        }
    }

    fn content(title: &str, template: &str, variables: Vec<Variable>, tags: &[&str]) -> CardContent {
        CardContent {
            title: title.into(),
            description: String::new(),
            template: template.into(),
            variables,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let old = content(
            "A",
            "line one\nHello {{ name }}\n",
            vec![variable("name", true), variable("gone", false)],
            &["x", "y"],
        );
        let new = content(
            "B",
            "line one\nHi {{ name }}\n",
            vec![variable("name", false), variable("new", true)],
            &["y", "z"],
        );
        let changes = Changes::between(&old, &new, 1, 2);
        let mut text = Vec::new();
        changes.print(&mut text, Uuid::nil(), 1, 2, false).unwrap();
        let text = String::from_utf8(text).unwrap();
        for expected in [
            "title:       \"A\" -> \"B\"",
            "tags:        +z -x",
            "+ new (string, required)",
            "- gone (string, optional)",
            "~ name (string, required) -> name (string, optional)",
            "-Hello {{ name }}",
            "+Hi {{ name }}",
            " line one",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        assert!(!text.contains("description:"));
        let same = Changes::between(&old, &old, 1, 1);
        assert!(same.is_empty());
    }
}
