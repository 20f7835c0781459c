//! Member import: CSV (with a header) or JSON lines, read as a stream of
//! rows each validated on its own line number, then upserted by (channel,
//! channel_user_id) in chunks through the store. Invalid rows abort the whole
//! import (nothing written) unless the caller skips them.

use crate::model::{Millis, NewMember};
use crate::store::{Store, StoreError, members::upsert_rows};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Rows per write transaction during import: big enough to amortise the
/// commit, small enough that sends interleave with a million-row import.
const IMPORT_CHUNK: usize = 5000;
/// Invalid rows listed in a reply (all are counted).
const MAX_LISTED_ERRORS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImportReport {
    pub inserted: u64,
    pub updated: u64,
    pub rejected: u64,
    /// The first invalid rows, with line numbers and reasons.
    pub errors: Vec<RowError>,
    /// True when nothing was written because of invalid rows.
    pub aborted: bool,
}

/// Why an import cannot start: its file, or its CSV header.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {}: {error}", path.display())]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Read(std::io::Error),
    #[error("line 1: cannot read the CSV header ({0})")]
    Header(csv::Error),
    #[error("line 1: unknown column {0:?} (columns: {columns})", columns = COLUMNS.join(", "))]
    UnknownColumn(String),
    #[error("line 1: the header has no {0:?} column")]
    MissingColumn(&'static str),
}

/// Why one row is refused; the reason names the column.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRow {
    #[error("channel {0:?} must be a channel instance name (letters, digits, '_' or '-')")]
    Channel(String),
    #[error("channel_user_id is empty")]
    EmptyUserId,
    #[error("{0} is longer than 256 bytes")]
    TooLong(&'static str),
    #[error("locale {0:?} is not a language tag like \"en\" or \"zh-CN\"")]
    Locale(String),
    #[error("timezone {0:?} is not an IANA time zone like \"Asia/Hong_Kong\"")]
    Timezone(String),
    #[error("tag {0:?} is invalid (no ';', at most 64 bytes)")]
    Tag(String),
    #[error("last_interaction_at {value:?} is not an RFC 3339 time ({error})")]
    Time {
        value: String,
        error: chrono::ParseError,
    },
    /// A CSV record with another number of fields than the header.
    #[error("has {fields} fields, the header has {header}")]
    FieldCount { fields: usize, header: usize },
    #[error("attributes is not valid JSON ({0})")]
    AttributesJson(serde_json::Error),
    /// `subscribed` in a CSV file, which takes the usual spellings.
    #[error("subscribed {0:?} must be true/false, 1/0 or yes/no")]
    CsvSubscribed(String),
    /// `subscribed` as a string in JSON.
    #[error("subscribed {0:?} must be true or false")]
    JsonSubscribed(String),
    /// A JSON field of the wrong type.
    #[error("{field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("not valid JSON ({0})")]
    Json(serde_json::Error),
    #[error("each line must be a JSON object")]
    NotAnObject,
    #[error("unknown field {0:?} (fields: {fields})", fields = COLUMNS.join(", "))]
    UnknownField(String),
    #[error("unreadable CSV record ({0})")]
    Csv(csv::Error),
    #[error("not UTF-8 text (invalid byte at column {column}); save the file as UTF-8")]
    NotUtf8 { column: usize },
    #[error("cannot read the file here ({0})")]
    Io(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// By extension, else by the first non-blank byte (`{` means JSON lines).
    pub fn detect(path: Option<&Path>, head: &[u8]) -> Format {
        if let Some(ext) = path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            match ext.to_ascii_lowercase().as_str() {
                "csv" => return Format::Csv,
                "jsonl" | "ndjson" | "json" => return Format::JsonLines,
                _ => {}
            }
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

const COLUMNS: &[&str] = &[
    "channel",
    "channel_user_id",
    "name",
    "locale",
    "timezone",
    "tags",
    "attributes",
    "subscribed",
    "last_interaction_at",
];

fn valid_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn valid_channel_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" => Some(true),
        "false" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

fn parse_time(s: &str) -> std::result::Result<Millis, InvalidRow> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|error| InvalidRow::Time {
            value: s.to_string(),
            error,
        })
}

fn clean_tags(
    tags: impl IntoIterator<Item = String>,
) -> std::result::Result<Vec<String>, InvalidRow> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_string();
        if t.is_empty() {
            continue;
        }
        if t.contains(';') || t.len() > 64 {
            return Err(InvalidRow::Tag(t));
        }
        out.push(t);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

const NOT_AN_OBJECT: InvalidRow = InvalidRow::WrongType {
    field: "attributes",
    expected: "a JSON object",
};
const NOT_STRINGS: InvalidRow = InvalidRow::WrongType {
    field: "tags",
    expected: "an array of strings",
};

impl NewMember {
    /// Checks every field; the reason names the column.
    fn validate(&self) -> std::result::Result<(), InvalidRow> {
        if !valid_channel_name(&self.channel) {
            return Err(InvalidRow::Channel(self.channel.clone()));
        }
        if self.channel_user_id.trim().is_empty() {
            return Err(InvalidRow::EmptyUserId);
        }
        if self.channel_user_id.len() > 256 {
            return Err(InvalidRow::TooLong("channel_user_id"));
        }
        if let Some(n) = &self.name
            && n.len() > 256
        {
            return Err(InvalidRow::TooLong("name"));
        }
        if let Some(l) = &self.locale
            && !valid_locale(l)
        {
            return Err(InvalidRow::Locale(l.clone()));
        }
        if let Some(tz) = &self.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(InvalidRow::Timezone(tz.clone()));
        }
        Ok(())
    }

    fn from_csv(
        header: &[String],
        record: &csv::StringRecord,
    ) -> std::result::Result<NewMember, InvalidRow> {
        let mut row = NewMember::default();
        if record.len() != header.len() {
            return Err(InvalidRow::FieldCount {
                fields: record.len(),
                header: header.len(),
            });
        }
        for (col, value) in header.iter().zip(record.iter()) {
            let v = value.to_string();
            match col.as_str() {
                "channel" => row.channel = v.trim().to_string(),
                "channel_user_id" => row.channel_user_id = v.trim().to_string(),
                "name" => row.name = Some(v),
                "locale" => row.locale = (!v.trim().is_empty()).then(|| v.trim().to_string()),
                "timezone" => row.timezone = (!v.trim().is_empty()).then(|| v.trim().to_string()),
                "tags" => row.tags = Some(clean_tags(v.split(';').map(String::from))?),
                "attributes" => {
                    row.attributes = Some(if v.trim().is_empty() {
                        serde_json::Map::new()
                    } else {
                        match serde_json::from_str::<serde_json::Value>(&v) {
                            Ok(serde_json::Value::Object(m)) => m,
                            Ok(_) => return Err(NOT_AN_OBJECT),
                            Err(e) => return Err(InvalidRow::AttributesJson(e)),
                        }
                    })
                }
                "subscribed" if !v.trim().is_empty() => {
                    row.subscribed =
                        Some(parse_bool(&v).ok_or_else(|| InvalidRow::CsvSubscribed(v.clone()))?)
                }
                "last_interaction_at" if !v.trim().is_empty() => {
                    row.last_interaction_at = Some(parse_time(&v)?)
                }
                _ => {}
            }
        }
        row.validate()?;
        Ok(row)
    }

    fn from_json(line: &str) -> std::result::Result<NewMember, InvalidRow> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(InvalidRow::Json)?;
        let obj = v.as_object().ok_or(InvalidRow::NotAnObject)?;
        for k in obj.keys() {
            if !COLUMNS.contains(&k.as_str()) {
                return Err(InvalidRow::UnknownField(k.clone()));
            }
        }
        let text = |k: &'static str| -> std::result::Result<Option<String>, InvalidRow> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(InvalidRow::WrongType {
                    field: k,
                    expected: "a string",
                }),
            }
        };
        let mut row = NewMember {
            channel: text("channel")?.unwrap_or_default().trim().to_string(),
            channel_user_id: text("channel_user_id")?
                .unwrap_or_default()
                .trim()
                .to_string(),
            name: text("name")?,
            locale: text("locale")?,
            timezone: text("timezone")?,
            ..Default::default()
        };
        match obj.get("tags") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(a)) => {
                let mut tags = Vec::new();
                for t in a {
                    tags.push(t.as_str().ok_or(NOT_STRINGS)?.to_string());
                }
                row.tags = Some(clean_tags(tags)?);
            }
            Some(serde_json::Value::String(s)) => {
                row.tags = Some(clean_tags(s.split(';').map(String::from))?)
            }
            Some(_) => return Err(NOT_STRINGS),
        }
        match obj.get("attributes") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => row.attributes = Some(m.clone()),
            Some(_) => return Err(NOT_AN_OBJECT),
        }
        match obj.get("subscribed") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Bool(b)) => row.subscribed = Some(*b),
            Some(serde_json::Value::Number(n)) if n.as_i64() == Some(0) => {
                row.subscribed = Some(false)
            }
            Some(serde_json::Value::Number(n)) if n.as_i64() == Some(1) => {
                row.subscribed = Some(true)
            }
            Some(serde_json::Value::String(s)) => {
                row.subscribed =
                    Some(parse_bool(s).ok_or_else(|| InvalidRow::JsonSubscribed(s.clone()))?)
            }
            Some(_) => {
                return Err(InvalidRow::WrongType {
                    field: "subscribed",
                    expected: "true or false",
                });
            }
        }
        if let Some(t) = text("last_interaction_at")? {
            row.last_interaction_at = Some(parse_time(&t)?);
        }
        row.validate()?;
        Ok(row)
    }
}

/// Streams rows out of an import source, one at a time, with line numbers.
pub struct RowReader<R: Read> {
    inner: RowSource<R>,
}

enum RowSource<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        header: Vec<String>,
        record: csv::StringRecord,
    },
    Json {
        reader: BufReader<R>,
        line_no: u64,
        buf: Vec<u8>,
        /// A read failed: the error was reported, nothing more is read.
        failed: bool,
    },
}

impl<R: Read> RowReader<R> {
    /// Fails when a CSV header lacks a required column or names an unknown one.
    pub fn new(format: Format, source: R) -> std::result::Result<RowReader<R>, SourceError> {
        let inner = match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(source);
                let header: Vec<String> = reader
                    .headers()
                    .map_err(SourceError::Header)?
                    .iter()
                    .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                    .collect();
                for h in &header {
                    if !COLUMNS.contains(&h.as_str()) {
                        return Err(SourceError::UnknownColumn(h.clone()));
                    }
                }
                for req in ["channel", "channel_user_id"] {
                    if !header.iter().any(|h| h == req) {
                        return Err(SourceError::MissingColumn(req));
                    }
                }
                RowSource::Csv {
                    reader,
                    header,
                    record: csv::StringRecord::new(),
                }
            }
            Format::JsonLines => RowSource::Json {
                reader: BufReader::new(source),
                line_no: 0,
                buf: Vec::new(),
                failed: false,
            },
        };
        Ok(RowReader { inner })
    }
}

impl<R: Read> Iterator for RowReader<R> {
    type Item = (u64, std::result::Result<NewMember, InvalidRow>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            RowSource::Csv {
                reader,
                header,
                record,
            } => match reader.read_record(record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map(|p| p.line()).unwrap_or(0);
                    Some((line, NewMember::from_csv(header, record)))
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    // A broken record (e.g. bad UTF-8) is one invalid row; csv resumes after it.
                    Some((line, Err(InvalidRow::Csv(e))))
                }
            },
            RowSource::Json { failed: true, .. } => None,
            RowSource::Json {
                reader,
                line_no,
                buf,
                failed,
            } => loop {
                // Bytes up to and including the newline, then UTF-8: a line
                // that is not UTF-8 is one invalid row, and reading stops at
                // its own newline (`read_line` would consume it and report
                // the error without saying where the next line starts).
                buf.clear();
                *line_no += 1;
                match reader.read_until(b'\n', buf) {
                    Ok(0) => return None,
                    Ok(_) => match std::str::from_utf8(buf) {
                        Ok(text) if text.trim().is_empty() => continue,
                        Ok(text) => return Some((*line_no, NewMember::from_json(text.trim()))),
                        Err(e) => {
                            let column = e.valid_up_to() + 1;
                            return Some((*line_no, Err(InvalidRow::NotUtf8 { column })));
                        }
                    },
                    Err(e) => {
                        *failed = true;
                        return Some((*line_no, Err(InvalidRow::Io(e))));
                    }
                }
            },
        }
    }
}

/// Where import rows come from: a file the daemon can read, or inline text.
pub enum ImportSource<'a> {
    File(&'a Path),
    Inline(&'a str),
}

fn open_rows<'a>(
    source: &ImportSource<'a>,
) -> std::result::Result<RowReader<Box<dyn Read + Send + 'a>>, SourceError> {
    match source {
        ImportSource::File(path) => {
            let open = || {
                std::fs::File::open(path).map_err(|error| SourceError::Open {
                    path: path.to_path_buf(),
                    error,
                })
            };
            let mut file = open()?;
            let mut head = [0u8; 64];
            let n = file.read(&mut head).map_err(SourceError::Read)?;
            let format = Format::detect(Some(path), &head[..n]);
            let file = open()?;
            RowReader::new(
                format,
                Box::new(std::io::BufReader::with_capacity(1 << 16, file)),
            )
        }
        ImportSource::Inline(text) => {
            let format = Format::detect(None, text.as_bytes());
            RowReader::new(format, Box::new(text.as_bytes()))
        }
    }
}

/// Imports members in two streaming passes: validate everything, then upsert
/// in chunks. Invalid rows abort the import (nothing written) unless
/// `skip_invalid`. Memory stays flat whatever the file size.
pub fn import(
    store: &Store,
    source: ImportSource<'_>,
    skip_invalid: bool,
) -> std::result::Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    let invalid = |e: SourceError| StoreError::Invalid(e.to_string());
    for (line, row) in open_rows(&source).map_err(invalid)? {
        if let Err(reason) = row {
            report.rejected += 1;
            if report.errors.len() < MAX_LISTED_ERRORS {
                report.errors.push(RowError {
                    line,
                    reason: reason.to_string(),
                });
            }
        }
    }
    if report.rejected > 0 && !skip_invalid {
        report.aborted = true;
        return Ok(report);
    }
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    let flush = |chunk: Vec<NewMember>, report: &mut ImportReport| -> crate::store::Result<()> {
        let (ins, upd) = store.write_blocking(move |conn| upsert_rows(conn, &chunk))?;
        report.inserted += ins;
        report.updated += upd;
        Ok(())
    };
    for (_, row) in open_rows(&source).map_err(invalid)? {
        if let Ok(row) = row {
            chunk.push(row);
            if chunk.len() == IMPORT_CHUNK {
                flush(std::mem::take(&mut chunk), &mut report)?;
            }
        }
    }
    if !chunk.is_empty() {
        flush(chunk, &mut report)?;
    }
    Ok(report)
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::store::members::count;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary bytes as CSV or JSON lines: every row is a member or a
        /// reason with a line number; never a panic.
        #[test]
        fn row_reader_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), csv in any::<bool>()) {
            let format = if csv { Format::Csv } else { Format::JsonLines };
            let mut data = if csv { b"channel,channel_user_id,tags,attributes,subscribed\n".to_vec() } else { Vec::new() };
            data.extend_from_slice(&body);
            if let Ok(rows) = RowReader::new(format, &data[..]) {
                for (line, row) in rows.take(1000) {
                    if let Err(reason) = row {
                        prop_assert!(!reason.to_string().is_empty());
                        prop_assert!(line >= 1);
                    }
                }
            }
        }

        /// Structured but hostile rows: accepted rows are valid members.
        #[test]
        fn accepted_rows_are_valid(ch in "[a-z_-]{0,8}", user in "\\PC{0,12}", tz in "[A-Za-z/_]{0,16}", sub in "[a-z01]{0,5}") {
            let text = format!("channel,channel_user_id,timezone,subscribed\n{ch},\"{}\",{tz},{sub}\n", user.replace('"', "\"\""));
            let rows: Vec<_> = RowReader::new(Format::Csv, text.as_bytes()).unwrap().collect();
            for (_, row) in rows {
                if let Ok(r) = row {
                    prop_assert!(valid_channel_name(&r.channel));
                    prop_assert!(!r.channel_user_id.trim().is_empty());
                    if let Some(tz) = r.timezone { prop_assert!(tz.parse::<chrono_tz::Tz>().is_ok()); }
                }
            }
        }
    }

    /// Bad UTF-8 and bad JSON are one invalid row each, on their own line
    /// numbers; the rows after them are read (none swallowed).
    #[test]
    fn json_lines_after_bad_bytes_keep_their_rows_and_numbers() {
        let mut data = Vec::new();
        data.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\"a\"}\n");
        data.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\"\xff\xfe\"}\n");
        data.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\"b\"}\n");
        data.extend_from_slice(b"\n");
        data.extend_from_slice(b"{not json\n");
        data.extend_from_slice(b"\xc3\n");
        data.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\"c\"}");
        let rows: Vec<(u64, std::result::Result<String, InvalidRow>)> =
            RowReader::new(Format::JsonLines, &data[..])
                .unwrap()
                .map(|(line, row)| (line, row.map(|r| r.channel_user_id)))
                .collect();
        let lines: Vec<u64> = rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3, 5, 6, 7], "{rows:?}");
        let users: Vec<&str> = rows
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(String::as_str))
            .collect();
        assert_eq!(users, ["a", "b", "c"], "{rows:?}");
        assert!(
            rows[1]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("not UTF-8"),
            "{rows:?}"
        );
        assert!(
            rows[3].1.as_ref().unwrap_err().to_string().contains("JSON"),
            "{rows:?}"
        );
        assert!(
            rows[4]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("not UTF-8"),
            "{rows:?}"
        );
    }

    /// Invalid input through the real import writes nothing.
    #[test]
    fn invalid_import_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&"\\PC{1,200}", |junk| {
                let text = format!("channel,channel_user_id\nsim,ok\n{junk}\nsim,\n");
                let report = import(&store, ImportSource::Inline(&text), false).unwrap();
                prop_assert!(report.aborted);
                let n = store.read_blocking(count).unwrap();
                prop_assert_eq!(n, 0);
                Ok(())
            })
            .unwrap();
        store.close();
    }
}
