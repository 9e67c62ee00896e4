//! Unit tests of the pure helpers both native paths rely on. The byte-for-byte agreement with the
//! Python reference paths is tested from Python (tests/ingest/test_native.py,
//! tests/processors/test_native_records.py); these pin the pieces that need no interpreter.

use crate::spans_block::{days_from_civil, varint};
use crate::{ascii_lower, format_float, hex, json_str};

#[test]
fn days_from_civil_matches_known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
}

#[test]
fn varint_is_leb128() {
    let mut out = Vec::new();
    varint(&mut out, 0);
    varint(&mut out, 127);
    varint(&mut out, 128);
    varint(&mut out, 300);
    assert_eq!(out, vec![0x00, 0x7f, 0x80, 0x01, 0xac, 0x02]);
}

#[test]
fn json_str_escapes_like_orjson() {
    let mut out = Vec::new();
    json_str(&mut out, "a\"b\\c\n\t\u{1}é");
    assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\n\\t\\u0001é\"");
}

#[test]
fn format_float_prints_shortest_round_trip() {
    let cases = [(0.1, "0.1"), (1.0, "1.0"), (-0.0, "-0.0"), (1e16, "1e+16"), (2.5e-7, "2.5e-7"),
                 (123456.789, "123456.789")];
    for (value, want) in cases {
        let mut out = String::new();
        format_float(&mut out, value);
        assert_eq!(out, want, "format_float({value})");
    }
}

#[test]
fn hex_and_ascii_lower() {
    assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    assert_eq!(ascii_lower("OpenAI").as_deref(), Some("openai"));
    assert_eq!(ascii_lower("Ünï"), None);
}

#[test]
fn embedded_schema_parses_and_prices_every_token_kind() {
    let schema = &crate::schema::SCHEMA;
    assert_eq!(schema.columns.first().map(|(name, _)| name.as_str()), Some("project_id"));
    assert!(schema.preview_chars > 0 && schema.cost_scale >= 1.0);
    let mut units = schema.term_units;
    units.sort_unstable();
    assert!(units.iter().all(|&unit| unit < 6), "{units:?}");
}

#[test]
fn schema_without_a_price_for_a_token_kind_is_refused() {
    let text = r#"{"columns": [{"name": "a", "type": "String"}], "preview_chars": 1, "cost_scale": 1,
        "price_keys": ["input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning"],
        "cost_terms": [["uncached_input", "input"], ["cache_read", "cache_read"]]}"#;
    let err = crate::schema::parse(text).err().expect("refused");
    assert!(err.contains("cache_write_5m"), "{err}");
}
