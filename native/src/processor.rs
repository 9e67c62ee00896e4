//! The processor's compiled path: bus records (canonical span JSON, `core/span.py`) -> enriched rows
//! of one ClickHouse Native block, without a Python object per field.
//!
//! It does exactly what `core.span.decode`, `stream_processors.enrich.enrich` and
//! `core.payloads.offload_payloads` do, for the records it can do exactly, and declines the rest
//! (`add_record` returns None) for the Python path, the reference: records that need a tokenizer
//! (model calls without usage), an error class, a payload offloaded, a time not in the bus's own
//! format, a value of an unexpected type, or a cost whose exact value is not a plain float division.
//! Prices come from Python (`Pricer`'s resolve callback, memoised per project and model), so the
//! price table and the project overrides stay in one place. `tests/processors/test_native_records.py`
//! holds the two paths together, block byte for block byte.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTzInfo};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::schema::SCHEMA;
use crate::spans_block::{days_from_civil, kind_of, put_bytes, varint, Column, Kind};

const CACHE_1H_KEY: &str = "gen_ai.usage.cache_creation.1h_input_tokens";
const EXACT_INT: u128 = 1 << 53; // below it an integer converts to f64 exactly
const MEMO_MAX: usize = 65_536;
const SCAN_MAX: usize = 32; // keys of an attributes object checked for repeats by scanning

#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A JSON object of strings, in its order (a Python dict keeps insertion order); None on a repeated
/// key, whose position a dict would keep from its first occurrence.
struct Pairs<'a>(Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for PairsVisitor<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
                let mut repeated = false;
                // Scanning is quadratic: past a few dozen keys (ingest allows 10,000) a set finds repeats.
                let mut seen: HashSet<Cow<'a, str>> = HashSet::new();
                while let Some((Text(key), Text(value))) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    if pairs.len() < SCAN_MAX {
                        repeated |= pairs.iter().any(|(k, _)| *k == key);
                    } else {
                        if seen.is_empty() {
                            seen.extend(pairs.iter().map(|(k, _)| k.clone()));
                        }
                        repeated |= !seen.insert(key.clone());
                    }
                    pairs.push((key, value));
                }
                Ok(Pairs(if repeated { None } else { Some(pairs) }))
            }
        }
        deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

/// One canonical record; every column must be there with its JSON type (serde refuses otherwise).
/// A key it does not know is refused too: serde would skip it unchecked, where orjson may reject it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    #[serde(borrow)] project_id: Cow<'a, str>,
    #[serde(borrow)] trace_id: Cow<'a, str>,
    #[serde(borrow)] span_id: Cow<'a, str>,
    #[serde(borrow)] parent_span_id: Cow<'a, str>,
    #[serde(borrow)] name: Cow<'a, str>,
    #[serde(borrow)] kind: Cow<'a, str>,
    #[serde(borrow)] service_name: Cow<'a, str>,
    #[serde(borrow)] start_time: Cow<'a, str>,
    #[serde(borrow)] end_time: Cow<'a, str>,
    #[allow(dead_code)] duration_ms: f64, // type-checked; recomputed
    #[serde(borrow)] status: Cow<'a, str>,
    #[serde(borrow)] status_message: Cow<'a, str>,
    #[serde(borrow)] error_type: Cow<'a, str>,
    #[serde(borrow)] error_class: Cow<'a, str>,
    #[serde(borrow)] operation: Cow<'a, str>,
    #[serde(borrow)] provider: Cow<'a, str>,
    #[serde(borrow)] request_model: Cow<'a, str>,
    #[serde(borrow)] model: Cow<'a, str>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    reasoning_tokens: u64,
    total_tokens: u64,
    tokens_estimated: u64,
    cost: Option<f64>,
    #[serde(borrow)] cost_source: Cow<'a, str>,
    ttft_ms: Option<f64>,
    tokens_per_second: Option<f64>,
    #[serde(borrow)] session_id: Cow<'a, str>,
    #[serde(borrow)] user_id: Cow<'a, str>,
    #[serde(borrow)] environment: Cow<'a, str>,
    #[serde(borrow)] release: Cow<'a, str>,
    #[serde(borrow)] tags: Vec<Text<'a>>,
    #[serde(borrow)] prompt_name: Cow<'a, str>,
    #[serde(borrow)] prompt_version: Cow<'a, str>,
    #[serde(borrow)] input: Cow<'a, str>,
    #[serde(borrow)] output: Cow<'a, str>,
    #[serde(borrow)] input_preview: Cow<'a, str>,
    #[serde(borrow)] output_preview: Cow<'a, str>,
    #[serde(borrow)] input_ref: Cow<'a, str>,
    #[serde(borrow)] output_ref: Cow<'a, str>,
    #[serde(borrow)] attributes: Pairs<'a>,
    #[serde(borrow)] events: Cow<'a, str>,
    #[serde(borrow)] ingested_at: Cow<'a, str>,
}

fn digits(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

/// Microseconds since the epoch of a time as the bus writes it (`2026-11-20T12:00:03.253000Z`,
/// fraction of 3 or 6 digits or none, `Z` or `+00:00`); None for anything else.
fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize]
        || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        micros = match n {
            3 => digits(&rest[1..4])? * 1000,
            6 => digits(&rest[1..7])?,
            _ => return None,
        };
        rest = &rest[1 + n..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros)
}

/// The first `preview_chars` characters (Python's `text[:PREVIEW_CHARS]`).
fn preview(text: &str) -> &str {
    match text.char_indices().nth(SCHEMA.preview_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Price units of one entry (`core.pricing.PriceEntry`): per token type, per 1M tokens, 1e-9 USD.
struct Prices {
    units: [u64; 6],
    tiers: Vec<(u64, [u64; 6])>, // (above_input_tokens, units), ascending
}

/// Resolves (project, provider, model, request model) to prices through a Python callable, once per
/// distinct key until `clear()` (called when a project's overrides change).
#[pyclass]
pub struct Pricer {
    resolve: Py<PyAny>,
    memo: HashMap<(String, String, String, String), Option<std::sync::Arc<Prices>>>,
}

#[pymethods]
impl Pricer {
    #[new]
    fn new(resolve: Py<PyAny>) -> Self {
        Pricer { resolve, memo: HashMap::new() }
    }

    fn clear(&mut self) {
        self.memo.clear();
    }
}

impl Pricer {
    fn prices(&mut self, py: Python, project: &str, provider: &str, model: &str, request_model: &str)
              -> PyResult<Option<std::sync::Arc<Prices>>> {
        let key = (project.to_owned(), provider.to_owned(), model.to_owned(), request_model.to_owned());
        if let Some(found) = self.memo.get(&key) {
            return Ok(found.clone());
        }
        let answer = self.resolve.call1(py, (project, provider, model, request_model))?;
        let found = answer
            .extract::<Option<(Vec<u64>, Vec<(u64, Vec<u64>)>)>>(py)?
            .map(|(units, tiers)| -> PyResult<std::sync::Arc<Prices>> {
                let six = |v: Vec<u64>| -> PyResult<[u64; 6]> {
                    v.try_into().map_err(|_| PyValueError::new_err("price units: six per entry"))
                };
                let tiers = tiers.into_iter().map(|(t, u)| Ok((t, six(u)?))).collect::<PyResult<Vec<_>>>()?;
                Ok(std::sync::Arc::new(Prices { units: six(units)?, tiers }))
            })
            .transpose()?;
        if self.memo.len() >= MEMO_MAX {
            self.memo.clear();
        }
        self.memo.insert(key, found.clone());
        Ok(found)
    }
}

/// The 1-hour cache writes of the usage (an attribute); None when Python's ``int()`` of it must decide.
fn cache_1h(attrs: &[(Cow<str>, Cow<str>)]) -> Option<u64> {
    match attrs.iter().find(|(k, _)| k.as_ref() == CACHE_1H_KEY) {
        None => Some(0),
        Some((_, v)) if v.is_empty() => Some(0),
        Some((_, v)) if v.len() <= 12 => digits(v.as_bytes()).map(|n| n as u64),
        Some(_) => None,
    }
}

/// What enrichment decided for one record (the columns it changes).
struct Derived {
    start: i64,
    end: i64,
    ingested: i64,
    duration_ms: f64,
    total_tokens: u64,
    cost: Option<f64>,
    cost_source: Option<&'static str>, // None: as recorded
    tokens_per_second: Option<f64>,
}

/// `enrich` + `offload_payloads` (previews) for a record the fast path can do exactly; None otherwise.
fn derive(py: Python, rec: &Record, attrs: &[(Cow<str>, Cow<str>)], pricer: &mut Pricer, offload_bytes: Option<usize>)
          -> PyResult<Option<Derived>> {
    let decline = Ok(None);
    if rec.project_id.is_empty() || rec.trace_id.is_empty() || rec.span_id.is_empty() {
        return decline; // decode's ValueError: the Python path dead-letters it
    }
    let (Some(start), Some(end), Some(ingested)) =
        (parse_time(&rec.start_time), parse_time(&rec.end_time), parse_time(&rec.ingested_at)) else { return decline };
    let span_us = end - start;
    if span_us.unsigned_abs() >= 1 << 53 {
        return decline;
    }
    let duration_ms = ((span_us as f64) / 1e6 * 1000.0).max(0.0);
    // model calls without usage get counted by a tokenizer (Python)
    if (rec.kind == "llm" || rec.kind == "embedding") && rec.input_tokens == 0 && rec.output_tokens == 0
        && (!rec.input.is_empty() || !rec.output.is_empty()) {
        return decline;
    }
    let total_tokens = if rec.total_tokens == 0 { rec.input_tokens + rec.output_tokens } else { rec.total_tokens };
    if rec.status == "error" && rec.error_class.is_empty() {
        return decline; // the error class comes from Python's classifier
    }
    for (text, reference) in [(&rec.input, &rec.input_ref), (&rec.output, &rec.output_ref)] {
        if offload_bytes.is_some_and(|limit| reference.is_empty() && text.len() > limit) {
            return decline; // offloaded to the blob store by Python
        }
    }
    // cost: enrich._price / pricing.compute_call_cost
    let (mut cost, mut cost_source) = (rec.cost, None);
    let user_cost = if rec.cost_source == "user" { rec.cost } else { None };
    let model = if rec.model.is_empty() { &rec.request_model } else { &rec.model };
    if user_cost.is_none() && model.is_empty() {
        // nothing to price: cost and source stay as recorded
    } else if let Some(value) = user_cost {
        if cache_1h(attrs).is_none() {
            return decline; // int() of it runs (and may fail) in Python whenever a cost is set
        }
        (cost, cost_source) = (Some(value), Some("user"));
    } else {
        let Some(cache_1h) = cache_1h(attrs) else { return decline };
        let empty = rec.input_tokens == 0 && rec.output_tokens == 0 && rec.cache_read_tokens == 0
            && rec.cache_creation_tokens == 0 && rec.reasoning_tokens == 0;
        if empty {
            (cost, cost_source) = (None, Some(""));
        } else {
            match pricer.prices(py, &rec.project_id, &rec.provider, &rec.model, &rec.request_model)? {
                None => (cost, cost_source) = (None, Some("unknown_model")),
                Some(prices) => {
                    let input = u128::from(rec.input_tokens);
                    let cache_read = u128::from(rec.cache_read_tokens);
                    let creation = u128::from(rec.cache_creation_tokens);
                    let write_1h = u128::from(cache_1h).min(creation);
                    let uncached = input.saturating_sub(cache_read + creation);
                    let reasoning = u128::from(rec.reasoning_tokens);
                    let visible_out = u128::from(rec.output_tokens).saturating_sub(reasoning);
                    let mut units = &prices.units;
                    for (threshold, tier) in &prices.tiers {
                        if rec.input_tokens > *threshold {
                            units = tier;
                        }
                    }
                    // counts in schema::TOKEN_KINDS order; the schema says which price each pays
                    let counts = [uncached, cache_read, creation - write_1h, write_1h, visible_out, reasoning];
                    let total: u128 =
                        counts.iter().zip(SCHEMA.term_units).map(|(count, unit)| count * u128::from(units[unit])).sum();
                    if total >= EXACT_INT {
                        return decline; // Python's int / int rounds it exactly
                    }
                    (cost, cost_source) = (Some(total as f64 / SCHEMA.cost_scale), Some("computed"));
                }
            }
        }
    }
    let mut tokens_per_second = rec.tokens_per_second;
    if rec.output_tokens != 0 && duration_ms != 0.0 {
        let generation_ms = duration_ms - rec.ttft_ms.unwrap_or(0.0);
        if generation_ms > 0.0 {
            tokens_per_second = Some(rec.output_tokens as f64 / (generation_ms / 1000.0));
        }
    }
    Ok(Some(Derived { start, end, ingested, duration_ms, total_tokens, cost, cost_source, tokens_per_second }))
}

/// The rows of one insert into `spans`: records added by the fast path (`add_record`) or as span
/// dicts (`add_dict`, rows the Python path made), encoded as they come; `block()` is the Native block.
#[pyclass]
pub struct SpanBlock {
    columns: Vec<(String, Column)>,
    source: String,
    rows: usize,
    fast: bool,
}

impl SpanBlock {
    fn marks(&self) -> Vec<[usize; 3]> {
        self.columns.iter().map(|(_, c)| c.mark()).collect()
    }

    fn rewind(&mut self, marks: &[[usize; 3]]) {
        for ((_, column), mark) in self.columns.iter_mut().zip(marks) {
            column.truncate(*mark);
        }
    }

    fn push_bus(&mut self, partition: u64, offset: u64) -> bool {
        let n = self.columns.len();
        let source = std::mem::take(&mut self.source);
        self.columns[n - 3].1.push_text(&source);
        self.source = source;
        self.columns[n - 2].1.push_uint(partition) && self.columns[n - 1].1.push_uint(offset)
    }
}

#[pymethods]
impl SpanBlock {
    /// ``columns``: (name, ClickHouse type) of the span columns, ``core.span.COLUMNS`` order; the three
    /// bus columns follow. The fast path is on only when they are exactly the ones it knows.
    #[new]
    fn new(columns: Vec<(String, String)>, source: String) -> PyResult<Self> {
        // the fast path writes the embedded schema's columns; Python's come from the same file
        let fast = columns == SCHEMA.columns;
        let mut built = Vec::with_capacity(columns.len() + 3);
        for (name, ch_type) in columns {
            let kind = kind_of(&ch_type)
                .ok_or_else(|| PyValueError::new_err(format!("column {name}: type {ch_type} not supported")))?;
            built.push((name, Column::new(kind)));
        }
        built.push(("bus_source".into(), Column::new(Kind::Str)));
        built.push(("bus_partition".into(), Column::new(Kind::UInt(0xffff))));
        built.push(("bus_offset".into(), Column::new(Kind::UInt(u64::MAX))));
        Ok(SpanBlock { columns: built, source, rows: 0, fast })
    }

    /// Whether ``add_record`` can take records (the columns are the ones it writes).
    #[getter]
    fn fast(&self) -> bool {
        self.fast
    }

    fn __len__(&self) -> usize {
        self.rows
    }

    /// Decode, enrich and add one bus record. Returns (project_id, trace_id, span_id, ingested_at and
    /// start_time as unix microseconds), or None when the Python path must take it (nothing added then): see the
    /// module doc, plus records of ``python_projects`` (those whose spans a hook needs as dicts).
    #[pyo3(signature = (value, partition, offset, pricer, offload_bytes=None, python_projects=None))]
    #[allow(clippy::too_many_arguments)] // a Python method: its keyword arguments are its interface
    fn add_record<'py>(&mut self, py: Python<'py>, value: &[u8], partition: u64, offset: u64,
                       pricer: &Bound<'py, Pricer>, offload_bytes: Option<usize>,
                       python_projects: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.fast || partition > 0xffff {
            return Ok(None);
        }
        let Ok(rec) = serde_json::from_slice::<Record>(value) else { return Ok(None) };
        let Some(attrs) = rec.attributes.0.as_deref() else { return Ok(None) };
        if let Some(projects) = python_projects {
            if projects.contains(PyString::new(py, &rec.project_id))? {
                return Ok(None);
            }
        }
        let too_big = |n: u64| n > u64::from(u32::MAX);
        if [rec.input_tokens, rec.output_tokens, rec.cache_read_tokens, rec.cache_creation_tokens,
            rec.reasoning_tokens, rec.total_tokens].into_iter().any(too_big)
            || too_big(rec.input_tokens + rec.output_tokens) || rec.tokens_estimated > 0xff {
            return Ok(None);
        }
        let Some(d) = derive(py, &rec, attrs, &mut pricer.borrow_mut(), offload_bytes)? else { return Ok(None) };
        if too_big(d.total_tokens) {
            return Ok(None);
        }
        let cost_source: &str = d.cost_source.unwrap_or(&rec.cost_source);
        let input_preview = if rec.input_preview.is_empty() { preview(&rec.input) } else { &rec.input_preview };
        let output_preview = if rec.output_preview.is_empty() { preview(&rec.output) } else { &rec.output_preview };
        let mut c = self.columns.iter_mut().map(|(_, column)| column);
        let mut text = |v: &str| c.next().unwrap().push_text(v);
        text(&rec.project_id);
        text(&rec.trace_id);
        text(&rec.span_id);
        text(&rec.parent_span_id);
        text(&rec.name);
        text(&rec.kind);
        text(&rec.service_name);
        c.next().unwrap().push_micros(d.start);
        c.next().unwrap().push_micros(d.end);
        c.next().unwrap().push_f64(Some(d.duration_ms));
        for v in [&rec.status, &rec.status_message, &rec.error_type, &rec.error_class, &rec.operation, &rec.provider,
                  &rec.request_model, &rec.model] {
            c.next().unwrap().push_text(v);
        }
        for n in [rec.input_tokens, rec.output_tokens, rec.cache_read_tokens, rec.cache_creation_tokens,
                  rec.reasoning_tokens, d.total_tokens, rec.tokens_estimated] {
            c.next().unwrap().push_uint(n);
        }
        c.next().unwrap().push_f64(d.cost);
        c.next().unwrap().push_text(cost_source);
        c.next().unwrap().push_f64(rec.ttft_ms);
        c.next().unwrap().push_f64(d.tokens_per_second);
        for v in [&rec.session_id, &rec.user_id, &rec.environment, &rec.release] {
            c.next().unwrap().push_text(v);
        }
        c.next().unwrap().push_texts(rec.tags.iter().map(|t| t.0.as_ref()));
        for v in [&*rec.prompt_name, &*rec.prompt_version, &*rec.input, &*rec.output, input_preview, output_preview,
                  &*rec.input_ref, &*rec.output_ref] {
            c.next().unwrap().push_text(v);
        }
        c.next().unwrap().push_pairs(attrs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        c.next().unwrap().push_text(&rec.events);
        c.next().unwrap().push_micros(d.ingested);
        self.push_bus(partition, offset);
        self.rows += 1;
        let key = (rec.project_id.as_ref(), rec.trace_id.as_ref(), rec.span_id.as_ref(), d.ingested, d.start);
        Ok(Some(key.into_pyobject(py)?.into_any()))
    }

    /// Add a span dict (``core.span.COLUMNS`` keys, values as the Python path leaves them). A value
    /// that does not fit its column raises ValueError naming it, and nothing is added.
    fn add_dict<'py>(&mut self, py: Python<'py>, row: &Bound<'py, PyDict>, partition: u64, offset: u64) -> PyResult<()> {
        let utc = PyTzInfo::utc(py)?;
        let marks = self.marks();
        let n = self.columns.len() - 3;
        for (name, column) in self.columns[..n].iter_mut() {
            let pushed = match row.get_item(name.as_str())? {
                None => Err(PyValueError::new_err(format!("column {name} is missing"))),
                Some(value) => column.push(&value, &utc).map_err(|e| PyValueError::new_err(format!("column {name}: {e}"))),
            };
            if let Err(e) = pushed {
                self.rewind(&marks);
                return Err(e);
            }
        }
        if !self.push_bus(partition, offset) {
            self.rewind(&marks);
            return Err(PyValueError::new_err(format!("bus position ({partition}, {offset}) out of range")));
        }
        self.rows += 1;
        Ok(())
    }

    /// The Native block of every row added.
    fn block<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let size: usize = self.columns.iter().map(|(_, c)| c.size() + 64).sum();
        let mut out = Vec::with_capacity(size + 16);
        varint(&mut out, self.columns.len() as u64);
        varint(&mut out, self.rows as u64);
        for (name, column) in &self.columns {
            put_bytes(&mut out, name.as_bytes());
            column.write(&mut out);
        }
        PyBytes::new(py, &out)
    }
}
