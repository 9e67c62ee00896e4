//! The compiled fast path of OTLP/HTTP protobuf ingest: request body -> bus messages.
//!
//! It does what `ingest.otlp.decode_otlp` followed by `core.span.encode` does, for the requests
//! whose spans use only the common parts of the conventions, and produces the very same bytes.
//! Anything else (a span that would be rejected, links, prompts sent as events, indexed message
//! keys, a `metadata` JSON object, Langfuse usage / cost details and levels, a value that would be
//! truncated or offloaded, a name to lower-case outside ASCII, a field this reader does not know,
//! invalid UTF-8, ...) makes it answer `None`, and the Python path
//! handles the whole request: Python stays the reference, and the differential tests in
//! `tests/ingest/test_native.py` hold the two to byte equality.
//!
//! The convention tables are not restated here: `ingest.native` passes `ingest.conventions`'
//! tables to `configure` at import.

mod processor;
mod schema;
mod spans_block;
#[cfg(test)]
mod tests;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// The longest attribute list (span, resource, event) or tag list this path takes. Duplicate keys
/// are found by scanning what came before, quadratic in the list: a request with longer lists (rare;
/// a hostile one has 100k) goes to the Python path, which is linear and applies the span limits.
const MAX_LIST: usize = 64;

// ---------------------------------------------------------------------------------------------
// configuration (from ingest.conventions / ingest.normalize / core.span)

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Kind,
    Operation,
    Provider,
    RequestModel,
    ResponseModel,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CacheRead,
    CacheCreation,
    Reasoning,
    TtftMs,
    TtftS,
    CompletionStart,
    Input,
    Output,
    SessionId,
    UserId,
    Environment,
    Release,
    PromptName,
    PromptVersion,
    Cost,
    CostDetails,
    UsageDetails,
    ErrorType,
    Level,
    LevelMessage,
    ServiceName,
}

const N_SLOTS: usize = 29;

fn slot_named(name: &str) -> Option<Slot> {
    use Slot::*;
    Some(match name {
        "kind" => Kind,
        "operation" => Operation,
        "provider" => Provider,
        "request_model" => RequestModel,
        "response_model" => ResponseModel,
        "input_tokens" => InputTokens,
        "output_tokens" => OutputTokens,
        "total_tokens" => TotalTokens,
        "cache_read" => CacheRead,
        "cache_creation" => CacheCreation,
        "reasoning" => Reasoning,
        "ttft_ms" => TtftMs,
        "ttft_s" => TtftS,
        "completion_start" => CompletionStart,
        "input" => Input,
        "output" => Output,
        "session_id" => SessionId,
        "user_id" => UserId,
        "environment" => Environment,
        "release" => Release,
        "prompt_name" => PromptName,
        "prompt_version" => PromptVersion,
        "cost" => Cost,
        "cost_details" => CostDetails,
        "usage_details" => UsageDetails,
        "error_type" => ErrorType,
        "level" => Level,
        "level_message" => LevelMessage,
        "service_name" => ServiceName,
        _ => return None,
    })
}

/// Span events that give the time to first token, which the Python path maps: a span with one is
/// declined. Same list as `ingest.conventions.FIRST_TOKEN_EVENTS` (tests/ingest/test_attribute_fidelity.py).
const FIRST_TOKEN_EVENTS: [&str; 4] = [
    "First Token Stream Event", "gen_ai.content.completion.chunk", "llm.content.completion.chunk", "ai.stream.firstChunk",
];
const UINT32_MAX: u64 = 4_294_967_295;
const MAX_NS: u64 = (1 << 63) - 1;

struct Config {
    slots: HashMap<String, (Slot, i64)>,
    tag_keys: Vec<String>,
    indexed_prefixes: Vec<String>,
    metadata_prefixes: Vec<String>,
    resource_keys: HashMap<String, (usize, i64)>, // 0 service_name, 1 environment, 2 release
    kind_aliases: HashMap<String, String>,
    operation_aliases: HashMap<String, String>,
    operation_kinds: HashMap<String, String>,
    otel_kinds: Vec<String>,
    preview_chars: usize,
}

static CONFIG: RwLock<Option<Arc<Config>>> = RwLock::new(None);

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn configure(
    columns: Vec<String>,
    slots: HashMap<String, (String, i64)>,
    tag_keys: Vec<String>,
    indexed_prefixes: Vec<String>,
    metadata_prefixes: Vec<String>,
    resource_keys: HashMap<String, (String, i64)>,
    kind_aliases: HashMap<String, String>,
    operation_aliases: HashMap<String, String>,
    operation_kinds: HashMap<String, String>,
    otel_kinds: Vec<String>,
    preview_chars: usize,
) -> PyResult<()> {
    // The record writer below writes the embedded schema's columns; Python's come from the same file,
    // unless it changed after this build.
    if columns.iter().ne(schema::SCHEMA.columns.iter().map(|(name, _)| name)) {
        return Err(PyValueError::new_err(
            "core.span.COLUMNS differ from the span_schema.json this extension was built with: rebuild it",
        ));
    }
    let mut slot_map = HashMap::with_capacity(slots.len());
    for (key, (slot, rank)) in slots {
        let known = slot_named(&slot)
            .ok_or_else(|| PyValueError::new_err(format!("native ingest does not know slot {slot:?}")))?;
        slot_map.insert(key, (known, rank));
    }
    let mut res_map = HashMap::new();
    for (key, (slot, rank)) in resource_keys {
        let index = match slot.as_str() {
            "service_name" => 0,
            "environment" => 1,
            "release" => 2,
            _ => return Err(PyValueError::new_err(format!("unknown resource slot {slot:?}"))),
        };
        res_map.insert(key, (index, rank));
    }
    let config = Config {
        slots: slot_map,
        tag_keys,
        indexed_prefixes,
        metadata_prefixes,
        resource_keys: res_map,
        kind_aliases,
        operation_aliases,
        operation_kinds,
        otel_kinds,
        preview_chars,
    };
    *CONFIG.write().unwrap() = Some(Arc::new(config));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// protobuf wire reading. Every method answers None for what this reader does not handle.

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn more(&self) -> bool {
        self.pos < self.buf.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut out: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            out |= ((byte & 0x7f) as u64) << (7 * i);
            if byte < 0x80 {
                return Some(out);
            }
        }
        None
    }

    fn tag(&mut self) -> Option<(u64, u8)> {
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return None;
        }
        Some((field, (tag & 7) as u8))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn fixed64(&mut self) -> Option<u64> {
        let end = self.pos.checked_add(8)?;
        let raw = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(u64::from_le_bytes(raw.try_into().ok()?))
    }

    fn fixed32(&mut self) -> Option<u32> {
        let end = self.pos.checked_add(4)?;
        let raw = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(u32::from_le_bytes(raw.try_into().ok()?))
    }
}

/// Each singular field may appear once: a repeated one would be merged (messages) or
/// overwritten (scalars) by protobuf, which is left to the Python path.
struct Seen(u64);

impl Seen {
    fn first(&mut self, field: u64) -> Option<()> {
        let bit = 1u64 << field;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

#[derive(Clone, Debug)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    Array(Vec<Val<'a>>),
}

fn any_value(buf: &[u8], nested: bool) -> Option<Val<'_>> {
    let mut r = Reader::new(buf);
    let mut out = None;
    while r.more() {
        let (field, wire) = r.tag()?;
        if out.is_some() {
            return None; // two members of the oneof
        }
        out = Some(match (field, wire) {
            (1, 2) => Val::Str(r.string()?),
            (2, 0) => Val::Bool(r.varint()? != 0),
            (3, 0) => Val::Int(r.varint()? as i64),
            (4, 1) => Val::Double(f64::from_bits(r.fixed64()?)),
            (5, 2) if !nested => {
                let mut items = Vec::new();
                let mut a = Reader::new(r.bytes()?);
                while a.more() {
                    match a.tag()? {
                        (1, 2) => items.push(any_value(a.bytes()?, true)?),
                        _ => return None,
                    }
                }
                Val::Array(items)
            }
            _ => return None, // kvlist, bytes, nested arrays, unknown fields
        });
    }
    out
}

fn key_value(buf: &[u8]) -> Option<(&str, Val<'_>)> {
    let mut r = Reader::new(buf);
    let (mut key, mut value) = (None, None);
    while r.more() {
        match r.tag()? {
            (1, 2) if key.is_none() => key = Some(r.string()?),
            (2, 2) if value.is_none() => value = Some(any_value(r.bytes()?, false)?),
            _ => return None,
        }
    }
    Some((key.unwrap_or(""), value?))
}

struct Span<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    name: &'a str,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'a str, Val<'a>)>,
    status_code: i32,
    status_message: &'a str,
    events: Vec<Event<'a>>,
}

struct Event<'a> {
    time_ns: u64,
    name: &'a str,
    attributes: Vec<(&'a str, Val<'a>)>,
}

fn event(buf: &[u8]) -> Option<Event<'_>> {
    let mut r = Reader::new(buf);
    let mut seen = Seen(0);
    let mut e = Event { time_ns: 0, name: "", attributes: Vec::new() };
    while r.more() {
        let (field, wire) = r.tag()?;
        if field != 3 {
            seen.first(field.min(63))?;
        }
        match (field, wire) {
            (1, 1) => e.time_ns = r.fixed64()?,
            (2, 2) => e.name = r.string()?,
            (3, 2) => {
                let (key, value) = key_value(r.bytes()?)?;
                if e.attributes.len() >= MAX_LIST || e.attributes.iter().any(|(k, _)| *k == key) {
                    return None; // protobuf -> dict keeps one value per key
                }
                e.attributes.push((key, value));
            }
            (4, 0) => {
                r.varint()?;
            }
            _ => return None,
        }
    }
    Some(e)
}

fn span(buf: &[u8]) -> Option<Span<'_>> {
    let mut r = Reader::new(buf);
    let mut seen = Seen(0);
    let mut s = Span {
        trace_id: b"",
        span_id: b"",
        parent_span_id: b"",
        name: "",
        kind: 0,
        start_ns: 0,
        end_ns: 0,
        attributes: Vec::with_capacity(16),
        status_code: 0,
        status_message: "",
        events: Vec::new(),
    };
    while r.more() {
        let (field, wire) = r.tag()?;
        if field != 9 && field != 11 {
            seen.first(field.min(63))?; // repeated: attributes (9), events (11)
        }
        match (field, wire) {
            (1, 2) => s.trace_id = r.bytes()?,
            (2, 2) => s.span_id = r.bytes()?,
            (3, 2) => {
                r.string()?; // trace_state: not stored, but must be valid UTF-8
            }
            (4, 2) => s.parent_span_id = r.bytes()?,
            (5, 2) => s.name = r.string()?,
            (6, 0) => s.kind = r.varint()? as i32,
            (7, 1) => s.start_ns = r.fixed64()?,
            (8, 1) => s.end_ns = r.fixed64()?,
            (9, 2) if s.attributes.len() >= MAX_LIST => return None,
            (9, 2) => s.attributes.push(key_value(r.bytes()?)?),
            (10, 0) | (12, 0) | (14, 0) => {
                r.varint()?;
            }
            (15, 2) => {
                let mut st = Reader::new(r.bytes()?);
                let mut seen_status = Seen(0);
                while st.more() {
                    let (f, w) = st.tag()?;
                    seen_status.first(f.min(63))?;
                    match (f, w) {
                        (2, 2) => s.status_message = st.string()?,
                        (3, 0) => s.status_code = st.varint()? as i32,
                        _ => return None,
                    }
                }
            }
            (16, 5) => {
                r.fixed32()?;
            }
            (11, 2) => s.events.push(event(r.bytes()?)?),
            _ => return None, // links (13), unknown fields
        }
    }
    Some(s)
}

/// What a resource (and its scope) gives each of its spans, as `ingest.normalize.make_resource`.
struct Resource {
    columns: [String; 3], // service_name, environment, release
    attributes: Vec<(String, String)>,
}

fn resource(cfg: &Config, attrs: &[(&str, Val)], scope: (&str, &str), lim: &Limits) -> Option<Resource> {
    if attrs.len() > MAX_LIST {
        return None;
    }
    let mut res = Resource { columns: Default::default(), attributes: Vec::with_capacity(attrs.len() + 2) };
    let mut ranks = [99i64; 3];
    for (i, (key, value)) in attrs.iter().enumerate() {
        if attrs[..i].iter().any(|(k, _)| k == key) {
            return None;
        }
        if let (Some(&(slot, rank)), Val::Str(text)) = (cfg.resource_keys.get(*key), value) {
            if rank < ranks[slot] {
                ranks[slot] = rank;
                res.columns[slot] = text.to_string();
            }
            if slot == 0 {
                continue;
            }
        }
        res.attributes.push((format!("resource.{key}"), attr_str(value, lim)?));
    }
    if !scope.0.is_empty() {
        res.attributes.push(("otel.scope.name".into(), scope.0.into()));
    }
    if !scope.1.is_empty() {
        res.attributes.push(("otel.scope.version".into(), scope.1.into()));
    }
    Some(res)
}

fn scope(buf: &[u8]) -> Option<(&str, &str)> {
    let mut r = Reader::new(buf);
    let mut seen = Seen(0);
    let (mut name, mut version) = ("", "");
    while r.more() {
        let (field, wire) = r.tag()?;
        if field != 3 {
            seen.first(field.min(63))?;
        }
        match (field, wire) {
            (1, 2) => name = r.string()?,
            (2, 2) => version = r.string()?,
            (3, 2) => {
                key_value(r.bytes()?)?; // not stored, but checked as protobuf would
            }
            (4, 0) => {
                r.varint()?;
            }
            _ => return None,
        }
    }
    Some((name, version))
}

// ---------------------------------------------------------------------------------------------
// JSON writing, byte for byte as orjson writes it

fn json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A finite float as orjson prints it: the shortest digits that read back exactly, in plain
/// notation for decimal exponents -5..=15 (with ".0" when whole), else as `1.5e+16` / `2.5e-7`.
fn format_float(out: &mut String, value: f64) {
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // ryu: the shortest digits that read back exactly, ties to even as orjson and Python's repr
    // (Rust's own `{:e}` rounds such ties up: 562949953421312.25 -> ...2 vs ...3)
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    let (sign, text) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (mantissa, exp_part) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu exponent")),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int_part}{frac_part}");
    let mut point = int_part.len() as i32 + exp_part; // value = 0.<all> x 10^point
    let trimmed = all.trim_start_matches('0');
    point -= (all.len() - trimmed.len()) as i32;
    let digits = trimmed.trim_end_matches('0').to_string();
    let exp = point - 1;
    out.push_str(sign);
    if (-5..=15).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if exp > 0 { "+" } else { "-" }, exp.unsigned_abs());
    }
}

fn push_float(out: &mut Vec<u8>, value: f64) {
    let mut text = String::with_capacity(24);
    format_float(&mut text, value);
    out.extend_from_slice(text.as_bytes());
}

fn push_int(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let mut text = String::with_capacity(20);
    let _ = write!(text, "{value}");
    out.extend_from_slice(text.as_bytes());
}

/// Unix microseconds -> `"2026-11-23T02:12:18.034004Z"` (no fraction when it is zero).
fn push_time(out: &mut Vec<u8>, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = String::with_capacity(30);
    let _ = write!(text, "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", tod / 3600, tod / 60 % 60, tod % 60);
    if frac != 0 {
        let _ = write!(text, ".{frac:06}");
    }
    text.push_str("Z\"");
    out.extend_from_slice(text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// normalisation: `ingest.normalize.to_record`, for the spans it can do exactly

struct Limits {
    max_attribute_bytes: usize,
    max_payload_bytes: usize,
    offload_chars: usize,
}

/// A list of scalars as orjson writes it; None for NaN / infinity.
fn push_json_array(out: &mut Vec<u8>, items: &[Val]) -> Option<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item {
            Val::Str(text) => json_str(out, text),
            other => out.extend_from_slice(scalar_json(other)?.as_bytes()),
        }
    }
    out.push(b']');
    Some(())
}

/// `_attr_str`: strings as they are, anything else as orjson's JSON; None if it would be cut.
fn attr_str(value: &Val, lim: &Limits) -> Option<String> {
    let text = match value {
        Val::Str(text) => text.to_string(),
        other => dumps(other)?,
    };
    (text.len() <= lim.max_attribute_bytes).then_some(text)
}

/// `_dumps`: orjson's JSON of a non-string value; None for NaN / infinity.
fn dumps(value: &Val) -> Option<String> {
    match value {
        Val::Array(items) => {
            let mut out = Vec::with_capacity(16 * items.len() + 2);
            push_json_array(&mut out, items)?;
            String::from_utf8(out).ok()
        }
        other => scalar_json(other),
    }
}

/// JSON of a non-string scalar; None for NaN / infinity (orjson writes null, Python text 'nan').
fn scalar_json(value: &Val) -> Option<String> {
    Some(match value {
        Val::Int(number) => number.to_string(),
        Val::Bool(flag) => (if *flag { "true" } else { "false" }).to_string(),
        Val::Double(number) if number.is_finite() => {
            let mut text = String::new();
            format_float(&mut text, *number);
            text
        }
        _ => return None,
    })
}

/// `_as_text` for a text column: strings as they are, ints in decimal, booleans and arrays as
/// JSON. Floats (Python's repr) are left to Python.
fn text_of(value: &Val) -> Option<String> {
    match value {
        Val::Double(_) => None,
        Val::Str(text) => Some(text.to_string()),
        other => dumps(other),
    }
}

/// `_to_count`: a token count as int, clamped to UInt32; None where Python would keep the value.
fn count_of(value: &Val) -> Option<u64> {
    match value {
        Val::Int(n) => Some((*n).clamp(0, UINT32_MAX as i64) as u64),
        Val::Double(f) if f.is_finite() => Some(f.trunc().clamp(0.0, UINT32_MAX as f64) as u64),
        _ => None,
    }
}

/// `_to_float` for numbers: finite and >= 0, else None.
fn float_of(value: &Val) -> Option<f64> {
    let number = match value {
        Val::Int(n) => *n as f64,
        Val::Double(f) => *f,
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then_some(number)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn ascii_lower(text: &str) -> Option<String> {
    text.is_ascii().then(|| text.to_ascii_lowercase())
}

/// The record's attributes in insertion order. A key already there would be overwritten in place
/// by Python's dict: that is left to Python (`push` answers None).
struct Attrs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Attrs<'a> {
    fn push(&mut self, key: Cow<'a, str>, value: impl Into<Cow<'a, str>>) -> Option<()> {
        if self.0.iter().any(|(k, _)| *k == key) {
            return None;
        }
        self.0.push((key, value.into()));
        Some(())
    }
}

/// `_add_tags`: a tag string or a list of them (other scalars as JSON), each kept once, in order.
fn add_tags(tags: &mut Vec<String>, value: &Val) -> Option<()> {
    let items: &[Val] = match value {
        Val::Array(items) => items,
        Val::Str(text) if text.starts_with('[') => return None, // a JSON list to parse
        single => std::slice::from_ref(single),
    };
    if tags.len() + items.len() > MAX_LIST {
        return None;
    }
    for item in items {
        let tag = match item {
            Val::Str(text) => text.to_string(),
            other => scalar_json(other)?,
        };
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Some(())
}

struct Found<'a> {
    rank: i64,
    key: &'a str,
    value: &'a Val<'a>,
}

/// `_set_status`'s events column: `[{"name", "time", "attributes"}]` as orjson writes it.
fn events_json(events: &[Event], lim: &Limits) -> Option<String> {
    let mut out = Vec::with_capacity(256 * events.len());
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json_str(&mut out, e.name);
        out.extend_from_slice(b",\"time\":");
        if e.time_ns > 0 && e.time_ns <= MAX_NS {
            push_time(&mut out, e.time_ns / 1000);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"attributes\":{");
        for (j, (key, value)) in e.attributes.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_str(&mut out, key);
            out.push(b':');
            match value {
                Val::Str(text) if text.len() > lim.max_attribute_bytes => return None, // truncated by Python
                Val::Str(text) => json_str(&mut out, text),
                Val::Array(items) => push_json_array(&mut out, items)?,
                other => out.extend_from_slice(scalar_json(other)?.as_bytes()),
            }
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
    String::from_utf8(out).ok()
}

/// One span -> its record, appended to `out`; None if Python must do this request.
#[allow(clippy::too_many_arguments)]
fn write_record(
    cfg: &Config,
    res: &Resource,
    span: &Span,
    project_json: &[u8],
    ingested_json: &[u8],
    lim: &Limits,
    out: &mut Vec<u8>,
) -> Option<String> {
    // _validate: anything it would reject is reported by Python
    let zero = |b: &[u8]| b.iter().all(|x| *x == 0);
    if span.trace_id.len() != 16 || zero(span.trace_id) || span.span_id.len() != 8 || zero(span.span_id) {
        return None;
    }
    if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) || span.name.is_empty() {
        return None;
    }
    if span.start_ns == 0 || span.start_ns > MAX_NS || span.end_ns > MAX_NS || span.end_ns < span.start_ns {
        return None;
    }

    let mut attrs = Attrs(res.attributes.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str()))).collect());
    let mut tags: Vec<String> = Vec::new();
    let mut found: [Option<Found>; N_SLOTS] = std::array::from_fn(|_| None);
    for (i, (key, value)) in span.attributes.iter().enumerate() {
        let key: &str = key;
        if span.attributes[..i].iter().any(|(k, _)| *k == key) {
            return None; // protobuf -> dict keeps one value per key
        }
        match cfg.slots.get(key) {
            None if cfg.tag_keys.iter().any(|k| k == key) => add_tags(&mut tags, value)?,
            None if key == "metadata" || cfg.indexed_prefixes.iter().any(|p| key.starts_with(p.as_str())) => {
                return None; // a JSON object to expand, indexed message lists
            }
            None => match cfg.metadata_prefixes.iter().find(|p| key.starts_with(p.as_str())) {
                Some(prefix) => attrs.push(Cow::Owned(format!("metadata.{}", &key[prefix.len()..])), attr_str(value, lim)?)?,
                None => attrs.push(Cow::Borrowed(key), attr_str(value, lim)?)?,
            },
            Some(&(slot, rank)) => {
                let entry = &mut found[slot as usize];
                match entry {
                    None => *entry = Some(Found { rank, key, value }),
                    Some(current) if rank < current.rank => {
                        let loser = (current.key, attr_str(current.value, lim)?);
                        *entry = Some(Found { rank, key, value });
                        attrs.push(Cow::Borrowed(loser.0), loser.1)?;
                    }
                    Some(_) => attrs.push(Cow::Borrowed(key), attr_str(value, lim)?)?,
                }
            }
        }
    }
    let get = |slot: Slot| found[slot as usize].as_ref();
    for slot in [Slot::CompletionStart, Slot::CostDetails, Slot::UsageDetails, Slot::Level, Slot::LevelMessage] {
        if get(slot).is_some() {
            return None;
        }
    }
    let text = |slot: Slot| -> Option<Option<String>> {
        match get(slot) {
            None => Some(None),
            Some(f) => text_of(f.value).map(Some),
        }
    };
    let nonempty = |value: Option<String>| value.filter(|t| !t.is_empty());

    let request_model = text(Slot::RequestModel)?.unwrap_or_default();
    let model = nonempty(text(Slot::ResponseModel)?).unwrap_or_else(|| request_model.clone());
    let service_name = nonempty(text(Slot::ServiceName)?).unwrap_or_else(|| res.columns[0].clone());
    let environment = nonempty(text(Slot::Environment)?).unwrap_or_else(|| res.columns[1].clone());
    let release = nonempty(text(Slot::Release)?).unwrap_or_else(|| res.columns[2].clone());
    let session_id = text(Slot::SessionId)?.unwrap_or_default();
    let user_id = text(Slot::UserId)?.unwrap_or_default();
    let prompt_name = text(Slot::PromptName)?.unwrap_or_default();
    let prompt_version = text(Slot::PromptVersion)?.unwrap_or_default();
    let error_type = text(Slot::ErrorType)?.unwrap_or_default();
    let provider = match text(Slot::Provider)? {
        Some(p) => ascii_lower(&p)?,
        None => String::new(),
    };
    let mut operation = String::new();
    if let Some(op) = nonempty(text(Slot::Operation)?) {
        let op = ascii_lower(&op)?;
        operation = cfg.operation_aliases.get(&op).cloned().unwrap_or(op);
    }
    let mut kind = None;
    if let Some(k) = nonempty(text(Slot::Kind)?) {
        kind = cfg.kind_aliases.get(&ascii_lower(&k)?).cloned();
    }
    if kind.is_none() && !operation.is_empty() {
        kind = cfg.operation_kinds.get(&operation).cloned();
    }
    let kind = kind.unwrap_or_else(|| if model.is_empty() { "span".into() } else { "llm".into() });

    // _set_status: an exception event gives the error type and message the span lacks
    let mut status = match span.status_code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    };
    if status == "unset" && !error_type.is_empty() {
        status = "error"; // the slot's error.type, not an exception event's
    }
    let mut status_message = span.status_message;
    let mut error_type = error_type;
    for e in &span.events {
        if e.name == "gen_ai.content.prompt" || e.name == "gen_ai.content.completion" {
            return None; // payloads sent as events (GenAI conventions before 1.28)
        }
        if FIRST_TOKEN_EVENTS.contains(&e.name) {
            return None; // time to first token from an event: ingest.conventions.FIRST_TOKEN_EVENTS
        }
        if e.name == "exception" {
            let get = |key: &str| e.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            if let (true, Some(Val::Str(t))) = (error_type.is_empty(), get("exception.type")) {
                error_type = t.to_string();
            }
            if let (true, Some(Val::Str(m))) = (status_message.is_empty(), get("exception.message")) {
                status_message = m;
            }
        }
    }
    if status_message.len() > lim.max_attribute_bytes {
        return None;
    }
    let events_json = if span.events.is_empty() { "[]".to_string() } else { events_json(&span.events, lim)? };

    // _set_tokens
    let mut counts: [Option<u64>; 6] = [None; 6];
    let count_slots = [Slot::InputTokens, Slot::OutputTokens, Slot::TotalTokens, Slot::CacheRead, Slot::CacheCreation, Slot::Reasoning];
    for (i, slot) in count_slots.iter().enumerate() {
        if let Some(f) = get(*slot) {
            counts[i] = Some(count_of(f.value)?);
        }
    }
    let cache_read = counts[3].unwrap_or(0);
    let cache_creation = counts[4].unwrap_or(0);
    let reasoning = counts[5].unwrap_or(0);
    let mut input_tokens = counts[0];
    let mut output_tokens = counts[1];
    if let Some(n) = input_tokens {
        if n < cache_read + cache_creation {
            input_tokens = Some(n + cache_read + cache_creation);
        }
    }
    if let Some(n) = output_tokens {
        if n < reasoning {
            output_tokens = Some(n + reasoning);
        }
    }
    let input_tokens = input_tokens.unwrap_or(0).min(UINT32_MAX);
    let output_tokens = output_tokens.unwrap_or(0).min(UINT32_MAX);
    let mut total = counts[2].unwrap_or(0);
    if total < input_tokens + output_tokens {
        total = input_tokens + output_tokens;
    }
    let total = total.min(UINT32_MAX);

    // _set_payloads
    let mut payloads: [(&str, String); 2] = [("", String::new()), ("", String::new())];
    for (i, slot) in [Slot::Input, Slot::Output].into_iter().enumerate() {
        if let Some(f) = get(slot) {
            let Val::Str(text) = f.value else { return None };
            if text.len() > lim.max_payload_bytes || text.chars().count() > lim.offload_chars {
                return None; // truncated, or offloaded to the blob store
            }
            let cut = text.char_indices().nth(cfg.preview_chars).map_or(text.len(), |(at, _)| at);
            payloads[i] = (text, text[..cut].to_string());
        }
    }

    // _set_cost, _set_ttft
    let cost = match get(Slot::Cost) {
        Some(f) => Some(float_of(f.value)?),
        None => None,
    };
    let mut ttft = None;
    if let Some(f) = get(Slot::TtftMs) {
        ttft = Some(float_of(f.value)?);
    } else if let Some(f) = get(Slot::TtftS) {
        ttft = Some(float_of(f.value)? * 1000.0);
    }

    if span.kind > 1 && (span.kind as usize) < cfg.otel_kinds.len() {
        attrs.push(Cow::Borrowed("otel.span_kind"), cfg.otel_kinds[span.kind as usize].as_str())?;
    }

    // the record, in the order of span_schema.json's columns (tests/ingest/test_native.py compares it
    // with the Python path's record, key by key)
    let trace_id = hex(span.trace_id);
    let start_us = span.start_ns / 1000;
    let end_us = span.end_ns / 1000;
    let key = |out: &mut Vec<u8>, name: &str| {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    let str_field = |out: &mut Vec<u8>, name: &str, value: &str| {
        key(out, name);
        json_str(out, value);
        out.push(b',');
    };
    out.extend_from_slice(b"{\"project_id\":");
    out.extend_from_slice(project_json);
    out.push(b',');
    str_field(out, "trace_id", &trace_id);
    str_field(out, "span_id", &hex(span.span_id));
    str_field(out, "parent_span_id", &hex(span.parent_span_id));
    str_field(out, "name", span.name);
    str_field(out, "kind", &kind);
    str_field(out, "service_name", &service_name);
    out.extend_from_slice(b"\"start_time\":");
    push_time(out, start_us);
    out.extend_from_slice(b",\"end_time\":");
    push_time(out, end_us);
    out.extend_from_slice(b",\"duration_ms\":");
    push_float(out, (span.end_ns - span.start_ns) as f64 / 1e6);
    out.push(b',');
    str_field(out, "status", status);
    str_field(out, "status_message", status_message);
    str_field(out, "error_type", &error_type);
    str_field(out, "error_class", "");
    str_field(out, "operation", &operation);
    str_field(out, "provider", &provider);
    str_field(out, "request_model", &request_model);
    str_field(out, "model", &model);
    for (name, value) in [
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("cache_read_tokens", cache_read),
        ("cache_creation_tokens", cache_creation),
        ("reasoning_tokens", reasoning),
        ("total_tokens", total),
        ("tokens_estimated", 0),
    ] {
        key(out, name);
        push_int(out, value);
        out.push(b',');
    }
    out.extend_from_slice(b"\"cost\":");
    match cost {
        Some(c) => push_float(out, c),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    str_field(out, "cost_source", if cost.is_some() { "user" } else { "" });
    out.extend_from_slice(b"\"ttft_ms\":");
    match ttft {
        Some(t) => push_float(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"tokens_per_second\":null,");
    str_field(out, "session_id", &session_id);
    str_field(out, "user_id", &user_id);
    str_field(out, "environment", &environment);
    str_field(out, "release", &release);
    out.extend_from_slice(b"\"tags\":[");
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, tag);
    }
    out.extend_from_slice(b"],");
    str_field(out, "prompt_name", &prompt_name);
    str_field(out, "prompt_version", &prompt_version);
    str_field(out, "input", payloads[0].0);
    str_field(out, "output", payloads[1].0);
    str_field(out, "input_preview", &payloads[0].1);
    str_field(out, "output_preview", &payloads[1].1);
    str_field(out, "input_ref", "");
    str_field(out, "output_ref", "");
    out.extend_from_slice(b"\"attributes\":{");
    for (i, (key, value)) in attrs.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, key);
        out.push(b':');
        json_str(out, value);
    }
    out.extend_from_slice(b"},");
    str_field(out, "events", &events_json);
    out.extend_from_slice(b"\"ingested_at\":");
    out.extend_from_slice(ingested_json);
    out.push(b'}');
    Some(trace_id)
}

/// A ResourceSpans or a ScopeSpans: its field 1 (the Resource / InstrumentationScope, at most once;
/// empty when absent) and its repeated field 2 (ScopeSpans / Spans); field 3 is the schema URL.
fn container(buf: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    let mut r = Reader::new(buf);
    let (mut head, mut items, mut seen_head) = (&buf[..0], Vec::new(), false);
    while r.more() {
        match r.tag()? {
            (1, 2) if !seen_head => {
                seen_head = true;
                head = r.bytes()?;
            }
            (2, 2) => items.push(r.bytes()?),
            (3, 2) => {
                r.string()?;
            }
            _ => return None,
        }
    }
    Some((head, items))
}

/// A Resource's attributes (field 1); its dropped count (2) is not stored.
fn resource_attributes(buf: &[u8]) -> Option<Vec<(&str, Val<'_>)>> {
    let mut r = Reader::new(buf);
    let mut attrs = Vec::new();
    while r.more() {
        match r.tag()? {
            (1, 2) => attrs.push(key_value(r.bytes()?)?),
            (2, 0) => {
                r.varint()?;
            }
            _ => return None,
        }
    }
    Some(attrs)
}

/// The whole request -> (trace id, message end offset) per span, or None.
fn encode_request(
    cfg: &Config,
    body: &[u8],
    project_json: &[u8],
    ingested_json: &[u8],
    lim: &Limits,
    out: &mut Vec<u8>,
) -> Option<Vec<(String, usize)>> {
    let mut spans_out = Vec::new();
    let mut r = Reader::new(body);
    while r.more() {
        match r.tag()? {
            (1, 2) => {}
            _ => return None,
        }
        let (resource_buf, scope_spans_list) = container(r.bytes()?)?;
        let resource_attrs = resource_attributes(resource_buf)?;
        for scope_spans in scope_spans_list {
            let (scope_buf, span_bufs) = container(scope_spans)?;
            let res = resource(cfg, &resource_attrs, scope(scope_buf)?, lim)?;
            for buf in span_bufs {
                let s = span(buf)?;
                let trace_id = write_record(cfg, &res, &s, project_json, ingested_json, lim, out)?;
                spans_out.push((trace_id, out.len()));
            }
        }
    }
    Some(spans_out)
}

/// OTLP protobuf body -> ``[(trace_id_key, record_json), ...]`` exactly as the Python path
/// (``decode_otlp`` then ``core.span.encode``) makes them, or None when Python must do it.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn encode_otlp_protobuf<'py>(
    py: Python<'py>,
    body: &[u8],
    project_id: &str,
    ingested_at_json: &[u8],
    max_attribute_bytes: usize,
    max_payload_bytes: usize,
    offload_chars: usize,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let cfg = CONFIG
        .read()
        .unwrap()
        .clone()
        .ok_or_else(|| PyValueError::new_err("evalforge_native.configure() was not called"))?;
    let lim = Limits { max_attribute_bytes, max_payload_bytes, offload_chars };
    let mut project_json = Vec::with_capacity(project_id.len() + 2);
    json_str(&mut project_json, project_id);
    let encoded = py.detach(|| {
        let mut out = Vec::with_capacity(body.len() * 2);
        encode_request(&cfg, body, &project_json, ingested_at_json, &lim, &mut out).map(|spans| (out, spans))
    });
    let Some((buf, spans)) = encoded else { return Ok(None) };
    let mut items = Vec::with_capacity(spans.len());
    let mut start = 0;
    for (trace_id, end) in spans {
        let key = PyBytes::new(py, trace_id.as_bytes());
        let value = PyBytes::new(py, &buf[start..end]);
        items.push(PyTuple::new(py, [key, value])?);
        start = end;
    }
    Ok(Some(PyList::new(py, items)?))
}

/// orjson's text of a float (exposed for the differential tests).
#[pyfunction]
fn format_float_for_tests(value: f64) -> PyResult<String> {
    if !value.is_finite() {
        return Err(PyValueError::new_err("finite floats only"));
    }
    let mut text = String::new();
    format_float(&mut text, value);
    Ok(text)
}

#[pymodule]
fn evalforge_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(encode_otlp_protobuf, m)?)?;
    m.add_function(wrap_pyfunction!(format_float_for_tests, m)?)?;
    m.add_class::<processor::SpanBlock>()?;
    m.add_class::<processor::Pricer>()?;
    Ok(())
}
