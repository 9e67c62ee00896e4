//! What the extension shares with Python, read from `core/span_schema.json` — the one source — which
//! is embedded when the extension is built. Python loads the same file (`core/span_schema.py`) and
//! hands its columns to `configure()` / `SpanBlock`, which keep their fast paths off when those differ
//! from the embedded ones (a build older than the file).

use std::sync::LazyLock;

use serde::Deserialize;

/// The token kinds the cost formula counts, in the order `processor.rs` computes them;
/// the schema's `cost_terms` say which price each kind pays.
pub const TOKEN_KINDS: [&str; 6] =
    ["uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "visible_output", "reasoning"];

pub struct Schema {
    /// (name, ClickHouse type) of the span columns, in insert order.
    pub columns: Vec<(String, String)>,
    /// Characters (code points) kept in `input_preview` / `output_preview`.
    pub preview_chars: usize,
    /// Cost units per USD: cost = sum(tokens * price units) / cost_scale.
    pub cost_scale: f64,
    /// Per token kind (`TOKEN_KINDS` order), the index of its price in an entry's price units.
    pub term_units: [usize; 6],
}

#[derive(Deserialize)]
struct RawColumn {
    name: String,
    #[serde(rename = "type")]
    ch_type: String,
}

#[derive(Deserialize)]
struct Raw {
    columns: Vec<RawColumn>,
    preview_chars: usize,
    cost_scale: u64,
    price_keys: Vec<String>,
    cost_terms: Vec<(String, String)>,
}

pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    parse(include_str!("../../core/span_schema.json")).unwrap_or_else(|err| panic!("core/span_schema.json: {err}"))
});

pub fn parse(text: &str) -> Result<Schema, String> {
    let raw: Raw = serde_json::from_str(text).map_err(|err| err.to_string())?;
    if raw.price_keys.len() != 6 {
        return Err(format!("price_keys: six expected (an entry's price units), got {}", raw.price_keys.len()));
    }
    let mut term_units = [usize::MAX; 6];
    for (kind, key) in &raw.cost_terms {
        let k = TOKEN_KINDS.iter().position(|known| known == kind).ok_or(format!("cost_terms: unknown token kind {kind:?}"))?;
        let unit = raw.price_keys.iter().position(|known| known == key).ok_or(format!("cost_terms: unknown price key {key:?}"))?;
        term_units[k] = unit;
    }
    if let Some(k) = term_units.iter().position(|&unit| unit == usize::MAX) {
        return Err(format!("cost_terms: no price for token kind {:?}", TOKEN_KINDS[k]));
    }
    Ok(Schema {
        columns: raw.columns.into_iter().map(|c| (c.name, c.ch_type)).collect(),
        preview_chars: raw.preview_chars,
        cost_scale: raw.cost_scale as f64,
        term_units,
    })
}
