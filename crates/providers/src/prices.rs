use crate::protocol::{parse_id, Protocol};
use crate::ConfigError;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// What a model costs, in micro-USD per million tokens (so $0.15 / 1M tokens is 150_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: u64,
    pub completion: u64,
}

/// Prices by provider id (`openai:gpt-4o-mini`) or bare model name (`gpt-4o-mini`, which then
/// applies to every provider serving that model). A provider id entry wins over a model entry.
///
/// `echo` and `ollama:chat:*` cost nothing unless the table says otherwise: both run locally.
/// Any other provider without an entry has an unknown price: [`PriceTable::cost`] returns `None`
/// for it so callers can tell "unknown" from "free", and [`PriceTable::cost_micro_usd`] counts it
/// as 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

/// Prices as published by OpenAI and Anthropic for standard (non-batch, uncached) tokens. They
/// change: check them before relying on them, and override them with `PRICES_FILE`.
const PUBLISHED: &[(&str, u64, u64)] = &[
    ("openai:gpt-4o-mini", 150_000, 600_000),
    ("openai:gpt-4o", 2_500_000, 10_000_000),
    ("openai:gpt-4.1", 2_000_000, 8_000_000),
    ("openai:gpt-4.1-mini", 400_000, 1_600_000),
    ("openai:gpt-4.1-nano", 100_000, 400_000),
    // Embedding models bill input tokens only.
    ("openai:embedding:text-embedding-3-small", 20_000, 0),
    ("openai:embedding:text-embedding-3-large", 130_000, 0),
    ("anthropic:messages:claude-3-haiku-20240307", 250_000, 1_250_000),
    ("anthropic:messages:claude-3-5-haiku-20241022", 800_000, 4_000_000),
    ("anthropic:messages:claude-3-5-sonnet-20241022", 3_000_000, 15_000_000),
    ("anthropic:messages:claude-sonnet-4-20250514", 3_000_000, 15_000_000),
];

impl PriceTable {
    /// A table with no entries: every remote model's price is unknown.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in prices (see `PUBLISHED` in the source: as published, check before relying on them).
    pub fn builtin() -> Self {
        let prices = PUBLISHED
            .iter()
            .map(|&(id, prompt, completion)| (id.to_owned(), Price { prompt, completion }))
            .collect();
        Self { prices }
    }

    /// The built-in prices, overridden entry by entry by the JSON file named by `PRICES_FILE`
    /// when it is set: `{"openai:gpt-4o-mini": {"prompt": 150000, "completion": 600000}, ...}`.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("PRICES_FILE") {
            Ok(path) if !path.trim().is_empty() => Self::builtin().with_file(Path::new(path.trim())),
            _ => Ok(Self::builtin()),
        }
    }

    /// This table overridden by the prices in a JSON file.
    pub fn with_file(self, path: &Path) -> Result<Self, ConfigError> {
        let failed = |reason: String| ConfigError::PricesFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        self.with_json(&text).map_err(failed)
    }

    /// This table overridden by the prices in a JSON object of `{id: {prompt, completion}}`.
    pub fn with_json(mut self, json: &str) -> Result<Self, String> {
        let entries: HashMap<String, Price> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        self.prices.extend(entries);
        Ok(self)
    }

    /// Sets the price of a provider id or model.
    pub fn insert(&mut self, id_or_model: impl Into<String>, price: Price) {
        self.prices.insert(id_or_model.into(), price);
    }

    /// The price of a provider id, `None` when it is unknown.
    pub fn price(&self, provider_id: &str) -> Option<Price> {
        if let Some(price) = self.prices.get(provider_id) {
            return Some(*price);
        }
        let target = parse_id(provider_id).ok()?;
        if let Some(price) = self.prices.get(target.model).filter(|_| !target.model.is_empty()) {
            return Some(*price);
        }
        matches!(target.protocol, Protocol::Echo | Protocol::Ollama).then_some(Price {
            prompt: 0,
            completion: 0,
        })
    }

    /// The cost of a call in micro-USD, `None` when the provider's price is unknown. The exact
    /// cost of both token kinds is summed before rounding, half up, to a whole micro-USD.
    pub fn cost(&self, provider_id: &str, prompt_tokens: u32, completion_tokens: u32) -> Option<i64> {
        let price = self.price(provider_id)?;
        let per_million = u128::from(prompt_tokens) * u128::from(price.prompt)
            + u128::from(completion_tokens) * u128::from(price.completion);
        Some(i64::try_from((per_million + 500_000) / 1_000_000).unwrap_or(i64::MAX))
    }

    /// [`PriceTable::cost`], with an unknown price counted as 0.
    pub fn cost_micro_usd(&self, provider_id: &str, prompt_tokens: u32, completion_tokens: u32) -> i64 {
        self.cost(provider_id, prompt_tokens, completion_tokens).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_the_exact_sum_half_up() {
        let mut table = PriceTable::empty();
        table.insert(
            "openai:m",
            Price {
                prompt: 150_000,
                completion: 600_000,
            },
        );
        // 10 * 0.15 + 0 = 1.5 micro-USD -> 2; 3 * 0.15 = 0.45 -> 0; 1 * 0.15 + 1 * 0.6 = 0.75 -> 1.
        assert_eq!(table.cost("openai:m", 10, 0), Some(2));
        assert_eq!(table.cost("openai:m", 3, 0), Some(0));
        assert_eq!(table.cost("openai:m", 1, 1), Some(1));
        // 1M prompt tokens cost exactly the prompt price.
        assert_eq!(table.cost("openai:m", 1_000_000, 1_000_000), Some(750_000));
        // The largest counts do not overflow.
        table.insert(
            "openai:dear",
            Price {
                prompt: u64::MAX,
                completion: u64::MAX,
            },
        );
        assert_eq!(table.cost("openai:dear", u32::MAX, u32::MAX), Some(i64::MAX));
    }

    #[test]
    fn unknown_prices_differ_from_free_ones() {
        let table = PriceTable::builtin();
        assert_eq!(table.cost("openai:no-such-model", 100, 100), None);
        assert_eq!(table.cost_micro_usd("openai:no-such-model", 100, 100), 0);
        assert_eq!(table.cost("echo", 100, 100), Some(0));
        assert_eq!(table.cost("ollama:chat:llama3", 100, 100), Some(0));
        assert_eq!(table.cost("not-a-provider", 100, 100), None);
        assert_eq!(table.cost("openai:gpt-4o-mini", 1_000, 1_000), Some(750));
    }

    #[test]
    fn a_prices_file_overrides_builtin_entries_and_may_name_bare_models() {
        let table = PriceTable::builtin()
            .with_json(r#"{"openai:gpt-4o-mini": {"prompt": 1000000, "completion": 0}, "llama3": {"prompt": 2000000, "completion": 2000000}}"#)
            .unwrap();
        assert_eq!(table.cost("openai:gpt-4o-mini", 1, 1), Some(1));
        assert_eq!(
            table.cost("openai:gpt-4o", 1_000, 0),
            Some(2_500),
            "other built-ins remain"
        );
        // A bare model name prices every provider serving it, local ones included.
        assert_eq!(table.cost("openai:llama3", 1, 0), Some(2));
        assert_eq!(table.cost("ollama:chat:llama3", 1, 0), Some(2));
    }

    #[test]
    fn a_malformed_prices_file_is_refused() {
        for bad in [
            "[]",
            r#"{"m": {"prompt": -1, "completion": 0}}"#,
            r#"{"m": {"prompt": 1}}"#,
            r#"{"m": {"prompt": 1, "completion": 1, "currency": "EUR"}}"#,
            r#"{"m": {"prompt": 0.5, "completion": 1}}"#,
        ] {
            assert!(PriceTable::empty().with_json(bad).is_err(), "{bad}");
        }
        let missing = PriceTable::empty()
            .with_file(Path::new("/nonexistent/prices.json"))
            .unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/prices.json"), "{missing}");
    }

    #[test]
    fn a_prices_file_is_read_from_disk() {
        let path = std::env::temp_dir().join(format!("prices-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"anthropic:messages:claude-x": {"prompt": 3000000, "completion": 15000000}}"#,
        )
        .unwrap();
        let table = PriceTable::builtin().with_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(table.cost("anthropic:messages:claude-x", 1_000, 100), Some(4_500));
    }
}
