//! The columns of a ClickHouse Native block, filled row by row: from span dicts (`Column::push`, used by
//! `processor::SpanBlock::add_dict`) or from the native record path's own values (`push_text` ...).
//!
//! clickhouse-connect spends ~20 us of Python per span row encoding a column-oriented Native block;
//! this writes the same values in ~4 us. (RowBinary would be simpler to write, but chDB parses it at
//! ~33 us per span row against ~15 us for Native.) LowCardinality columns are sent as their plain
//! types, which the server converts on insert. Values are converted exactly as
//! clickhouse-connect converts them; anything else (None in a non-Nullable column, a negative count,
//! a non-string in a String column, ...) raises ValueError naming the column, and the sink
//! then inserts that batch through clickhouse-connect, which finds and dead-letters the bad rows.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyDelta, PyDeltaAccess, PyDateAccess, PyDict, PyList, PyString, PyTimeAccess, PyTuple, PyTzInfo, PyTzInfoAccess};

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Str,
    UInt(u64), // max value
    F64,
    NullableF64,
    Time(i64), // ticks per second: 1_000_000 or 1_000
    StrArray,
    StrMap,
}

pub(crate) fn kind_of(ch_type: &str) -> Option<Kind> {
    let bare = ch_type.strip_prefix("LowCardinality(").and_then(|t| t.strip_suffix(')')).unwrap_or(ch_type);
    Some(match bare {
        "String" => Kind::Str,
        "UInt8" => Kind::UInt(u8::MAX as u64),
        "UInt16" => Kind::UInt(u16::MAX as u64),
        "UInt32" => Kind::UInt(u32::MAX as u64),
        "UInt64" => Kind::UInt(u64::MAX),
        "Float64" => Kind::F64,
        "Nullable(Float64)" => Kind::NullableF64,
        "DateTime64(6, 'UTC')" => Kind::Time(1_000_000),
        "DateTime64(3, 'UTC')" => Kind::Time(1_000),
        "Array(String)" | "Array(LowCardinality(String))" => Kind::StrArray,
        "Map(String, String)" | "Map(LowCardinality(String), String)" => Kind::StrMap,
        _ => return None,
    })
}

pub(crate) fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, value: &Bound<PyAny>) -> PyResult<()> {
    let text = value.cast::<PyString>()?.to_str()?;
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Microseconds since the epoch; naive datetimes are taken as UTC, aware ones by their offset.
fn micros(value: &Bound<PyAny>, utc: &Bound<PyTzInfo>) -> PyResult<i64> {
    let dt = value.cast::<PyDateTime>()?;
    let days = days_from_civil(dt.get_year() as i64, dt.get_month() as i64, dt.get_day() as i64);
    let secs = days * 86_400 + dt.get_hour() as i64 * 3600 + dt.get_minute() as i64 * 60 + dt.get_second() as i64;
    let mut us = secs * 1_000_000 + dt.get_microsecond() as i64;
    if let Some(tz) = dt.get_tzinfo() {
        if !tz.is(utc) {
            let offset = dt.call_method0("utcoffset")?;
            if !offset.is_none() {
                let delta = offset.cast::<PyDelta>()?;
                us -= (delta.get_days() as i64 * 86_400 + delta.get_seconds() as i64) * 1_000_000
                    + delta.get_microseconds() as i64;
            }
        }
    }
    Ok(us)
}

/// One column's Native data, filled row by row.
pub(crate) struct Column {
    kind: Kind,
    data: Vec<u8>,
    aux: Vec<u8>,      // Nullable: the null map; Map: the values column
    offsets: Vec<u64>, // Array / Map: cumulative element counts
}

impl Column {
    pub(crate) fn new(kind: Kind) -> Self {
        Column { kind, data: Vec::new(), aux: Vec::new(), offsets: Vec::new() }
    }

    /// Bytes of data held.
    pub(crate) fn size(&self) -> usize {
        self.data.len() + self.aux.len() + 8 * self.offsets.len()
    }

    /// Where the column ends now: ``truncate`` to it drops the rows pushed after.
    pub(crate) fn mark(&self) -> [usize; 3] {
        [self.data.len(), self.aux.len(), self.offsets.len()]
    }

    pub(crate) fn truncate(&mut self, mark: [usize; 3]) {
        self.data.truncate(mark[0]);
        self.aux.truncate(mark[1]);
        self.offsets.truncate(mark[2]);
    }

    pub(crate) fn push_text(&mut self, text: &str) {
        varint(&mut self.data, text.len() as u64);
        self.data.extend_from_slice(text.as_bytes());
    }

    /// A count into a UInt column; false when it does not fit.
    pub(crate) fn push_uint(&mut self, n: u64) -> bool {
        let Kind::UInt(max) = self.kind else { return false };
        if n > max {
            return false;
        }
        let width = match max {
            0xff => 1,
            0xffff => 2,
            0xffff_ffff => 4,
            _ => 8,
        };
        self.data.extend_from_slice(&n.to_le_bytes()[..width]);
        true
    }

    pub(crate) fn push_f64(&mut self, value: Option<f64>) {
        if matches!(self.kind, Kind::NullableF64) {
            self.aux.push(u8::from(value.is_none()));
        }
        self.data.extend_from_slice(&value.unwrap_or(0.0).to_le_bytes());
    }

    pub(crate) fn push_micros(&mut self, micros: i64) {
        let Kind::Time(per_second) = self.kind else { return };
        self.data.extend_from_slice(&micros.div_euclid(1_000_000 / per_second).to_le_bytes());
    }

    pub(crate) fn push_texts<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        let count = items.len() as u64;
        for item in items {
            varint(&mut self.data, item.len() as u64);
            self.data.extend_from_slice(item.as_bytes());
        }
        self.offsets.push(self.offsets.last().copied().unwrap_or(0) + count);
    }

    pub(crate) fn push_pairs<'a>(&mut self, items: impl ExactSizeIterator<Item = (&'a str, &'a str)>) {
        let count = items.len() as u64;
        for (key, value) in items {
            varint(&mut self.data, key.len() as u64);
            self.data.extend_from_slice(key.as_bytes());
            varint(&mut self.aux, value.len() as u64);
            self.aux.extend_from_slice(value.as_bytes());
        }
        self.offsets.push(self.offsets.last().copied().unwrap_or(0) + count);
    }

    pub(crate) fn push(&mut self, value: &Bound<PyAny>, utc: &Bound<PyTzInfo>) -> PyResult<()> {
        match self.kind {
            Kind::Str => put_str(&mut self.data, value)?,
            Kind::UInt(_) => {
                let n: u64 = value.extract()?;
                if !self.push_uint(n) {
                    return Err(PyValueError::new_err(format!("{n} is out of range")));
                }
            }
            Kind::F64 => self.data.extend_from_slice(&value.extract::<f64>()?.to_le_bytes()),
            Kind::NullableF64 => {
                if value.is_none() {
                    self.aux.push(1);
                    self.data.extend_from_slice(&0f64.to_le_bytes());
                } else {
                    self.aux.push(0);
                    self.data.extend_from_slice(&value.extract::<f64>()?.to_le_bytes());
                }
            }
            Kind::Time(per_second) => {
                let ticks = micros(value, utc)?.div_euclid(1_000_000 / per_second);
                self.data.extend_from_slice(&ticks.to_le_bytes());
            }
            Kind::StrArray => {
                let mut count = 0u64;
                if let Ok(list) = value.cast::<PyList>() {
                    for item in list.iter() {
                        put_str(&mut self.data, &item)?;
                        count += 1;
                    }
                } else {
                    for item in value.cast::<PyTuple>()?.iter() {
                        put_str(&mut self.data, &item)?;
                        count += 1;
                    }
                }
                self.offsets.push(self.offsets.last().copied().unwrap_or(0) + count);
            }
            Kind::StrMap => {
                let map = value.cast::<PyDict>()?;
                for (key, item) in map.iter() {
                    put_str(&mut self.data, &key)?;
                    put_str(&mut self.aux, &item)?;
                }
                self.offsets.push(self.offsets.last().copied().unwrap_or(0) + map.len() as u64);
            }
        }
        Ok(())
    }

    /// The type named in the block, and the data in Native layout.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let type_name = match self.kind {
            Kind::Str => "String",
            Kind::UInt(0xff) => "UInt8",
            Kind::UInt(0xffff) => "UInt16",
            Kind::UInt(0xffff_ffff) => "UInt32",
            Kind::UInt(_) => "UInt64",
            Kind::F64 => "Float64",
            Kind::NullableF64 => "Nullable(Float64)",
            Kind::Time(1_000_000) => "DateTime64(6, 'UTC')",
            Kind::Time(_) => "DateTime64(3, 'UTC')",
            Kind::StrArray => "Array(String)",
            Kind::StrMap => "Map(String, String)",
        };
        put_bytes(out, type_name.as_bytes());
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        if matches!(self.kind, Kind::NullableF64) {
            out.extend_from_slice(&self.aux);
        }
        out.extend_from_slice(&self.data);
        if matches!(self.kind, Kind::StrMap) {
            out.extend_from_slice(&self.aux);
        }
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
