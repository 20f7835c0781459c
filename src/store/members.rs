//! Members: bulk import (CSV / JSON lines, upsert by channel + channel_user_id),
//! lookups, and the row → `Member` mapping used by audiences and dispatch.

use super::{Result, Store, StoreError};
use crate::model::{Member, MemberId, Millis, now_ms};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Rows per write transaction during import: big enough to amortise the
/// commit, small enough that sends interleave with a million-row import.
const IMPORT_CHUNK: usize = 5000;
/// Invalid rows listed in a reply (all are counted).
const MAX_LISTED_ERRORS: usize = 50;

/// One member as given in an import file. `None` = column absent: keep the
/// stored value on update, use the default on insert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportRow {
    pub channel: String,
    pub channel_user_id: String,
    pub name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub tags: Option<Vec<String>>,
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    pub subscribed: Option<bool>,
    pub last_interaction_at: Option<Millis>,
}

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

fn parse_time(s: &str) -> std::result::Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("last_interaction_at {s:?} is not an RFC 3339 time ({e})"))
}

fn clean_tags(tags: impl IntoIterator<Item = String>) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_string();
        if t.is_empty() {
            continue;
        }
        if t.contains(';') || t.len() > 64 {
            return Err(format!("tag {t:?} is invalid (no ';', at most 64 bytes)"));
        }
        out.push(t);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl ImportRow {
    /// Checks every field; the reason names the column.
    fn validate(&self) -> std::result::Result<(), String> {
        if !valid_channel_name(&self.channel) {
            return Err(format!(
                "channel {:?} must be a channel instance name (letters, digits, '_' or '-')",
                self.channel
            ));
        }
        if self.channel_user_id.trim().is_empty() {
            return Err("channel_user_id is empty".into());
        }
        if self.channel_user_id.len() > 256 {
            return Err("channel_user_id is longer than 256 bytes".into());
        }
        if let Some(n) = &self.name
            && n.len() > 256
        {
            return Err("name is longer than 256 bytes".into());
        }
        if let Some(l) = &self.locale
            && !valid_locale(l)
        {
            return Err(format!(
                "locale {l:?} is not a language tag like \"en\" or \"zh-CN\""
            ));
        }
        if let Some(tz) = &self.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(format!(
                "timezone {tz:?} is not an IANA time zone like \"Asia/Hong_Kong\""
            ));
        }
        Ok(())
    }

    fn from_csv(
        header: &[String],
        record: &csv::StringRecord,
    ) -> std::result::Result<ImportRow, String> {
        let mut row = ImportRow::default();
        if record.len() != header.len() {
            return Err(format!(
                "has {} fields, the header has {}",
                record.len(),
                header.len()
            ));
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
                            Ok(_) => return Err("attributes must be a JSON object".into()),
                            Err(e) => return Err(format!("attributes is not valid JSON ({e})")),
                        }
                    })
                }
                "subscribed" if !v.trim().is_empty() => {
                    row.subscribed = Some(parse_bool(&v).ok_or_else(|| {
                        format!("subscribed {v:?} must be true/false, 1/0 or yes/no")
                    })?)
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

    fn from_json(line: &str) -> std::result::Result<ImportRow, String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
        let obj = v.as_object().ok_or("each line must be a JSON object")?;
        for k in obj.keys() {
            if !COLUMNS.contains(&k.as_str()) {
                return Err(format!(
                    "unknown field {k:?} (fields: {})",
                    COLUMNS.join(", ")
                ));
            }
        }
        let text = |k: &str| -> std::result::Result<Option<String>, String> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("{k} must be a string")),
            }
        };
        let mut row = ImportRow {
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
                    tags.push(
                        t.as_str()
                            .ok_or("tags must be an array of strings")?
                            .to_string(),
                    );
                }
                row.tags = Some(clean_tags(tags)?);
            }
            Some(serde_json::Value::String(s)) => {
                row.tags = Some(clean_tags(s.split(';').map(String::from))?)
            }
            Some(_) => return Err("tags must be an array of strings".into()),
        }
        match obj.get("attributes") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => row.attributes = Some(m.clone()),
            Some(_) => return Err("attributes must be a JSON object".into()),
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
                row.subscribed = Some(
                    parse_bool(s)
                        .ok_or_else(|| format!("subscribed {s:?} must be true or false"))?,
                )
            }
            Some(_) => return Err("subscribed must be true or false".into()),
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
    pub fn new(format: Format, source: R) -> std::result::Result<RowReader<R>, String> {
        let inner = match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(source);
                let header: Vec<String> = reader
                    .headers()
                    .map_err(|e| format!("line 1: cannot read the CSV header ({e})"))?
                    .iter()
                    .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                    .collect();
                for h in &header {
                    if !COLUMNS.contains(&h.as_str()) {
                        return Err(format!(
                            "line 1: unknown column {h:?} (columns: {})",
                            COLUMNS.join(", ")
                        ));
                    }
                }
                for req in ["channel", "channel_user_id"] {
                    if !header.iter().any(|h| h == req) {
                        return Err(format!("line 1: the header has no {req:?} column"));
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
    type Item = (u64, std::result::Result<ImportRow, String>);

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
                    Some((line, ImportRow::from_csv(header, record)))
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    // A broken record (e.g. bad UTF-8) is one invalid row; csv resumes after it.
                    Some((line, Err(format!("unreadable CSV record ({e})"))))
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
                        Ok(text) => return Some((*line_no, ImportRow::from_json(text.trim()))),
                        Err(e) => {
                            let reason = format!(
                                "not UTF-8 text (invalid byte at column {}); save the file as UTF-8",
                                e.valid_up_to() + 1
                            );
                            return Some((*line_no, Err(reason)));
                        }
                    },
                    Err(e) => {
                        *failed = true;
                        return Some((*line_no, Err(format!("cannot read the file here ({e})"))));
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
) -> std::result::Result<RowReader<Box<dyn Read + Send + 'a>>, String> {
    match source {
        ImportSource::File(path) => {
            let mut file = std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let mut head = [0u8; 64];
            let n = file.read(&mut head).map_err(|e| e.to_string())?;
            let format = Format::detect(Some(path), &head[..n]);
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
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
    for (line, row) in open_rows(&source).map_err(StoreError::Invalid)? {
        if let Err(reason) = row {
            report.rejected += 1;
            if report.errors.len() < MAX_LISTED_ERRORS {
                report.errors.push(RowError { line, reason });
            }
        }
    }
    if report.rejected > 0 && !skip_invalid {
        report.aborted = true;
        return Ok(report);
    }
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    let flush = |chunk: Vec<ImportRow>, report: &mut ImportReport| -> Result<()> {
        let (ins, upd) = store.write_blocking(move |conn| upsert_rows(conn, &chunk))?;
        report.inserted += ins;
        report.updated += upd;
        Ok(())
    };
    for (_, row) in open_rows(&source).map_err(StoreError::Invalid)? {
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

fn join_tags(tags: &[String]) -> String {
    tags.join(";")
}

fn insert_tags(conn: &Connection, id: MemberId, tags: &[String]) -> rusqlite::Result<()> {
    let mut ins =
        conn.prepare_cached("INSERT OR IGNORE INTO member_tags (tag, member_id) VALUES (?1, ?2)")?;
    for t in tags {
        ins.execute(params![t, id])?;
    }
    Ok(())
}

/// Upserts rows by (channel, channel_user_id); returns (inserted, updated).
pub fn upsert_rows(conn: &Connection, rows: &[ImportRow]) -> Result<(u64, u64)> {
    let now = now_ms();
    let mut find =
        conn.prepare_cached("SELECT id FROM members WHERE channel = ?1 AND channel_user_id = ?2")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO members (channel, channel_user_id, name, locale, timezone, tags, attributes,
                              subscribed, last_interaction_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?;
    let mut update = conn.prepare_cached(
        "UPDATE members SET
            name = coalesce(?2, name),
            locale = coalesce(?3, locale),
            timezone = coalesce(?4, timezone),
            tags = coalesce(?5, tags),
            attributes = coalesce(?6, attributes),
            subscribed = coalesce(?7, subscribed),
            last_interaction_at = coalesce(?8, last_interaction_at),
            updated_at = ?9
         WHERE id = ?1",
    )?;
    let mut clear_tags = conn.prepare_cached("DELETE FROM member_tags WHERE member_id = ?1")?;
    let (mut inserted, mut updated) = (0, 0);
    for r in rows {
        let attrs = r
            .attributes
            .as_ref()
            .map(|a| serde_json::Value::Object(a.clone()).to_string());
        let existing: Option<MemberId> = find
            .query_row(params![r.channel, r.channel_user_id], |row| row.get(0))
            .optional()?;
        match existing {
            None => {
                let tags = r.tags.clone().unwrap_or_default();
                insert.execute(params![
                    r.channel,
                    r.channel_user_id,
                    r.name.as_deref().unwrap_or(""),
                    r.locale.as_deref().unwrap_or("en"),
                    r.timezone.as_deref().unwrap_or("UTC"),
                    join_tags(&tags),
                    attrs.as_deref().unwrap_or("{}"),
                    r.subscribed.unwrap_or(true),
                    r.last_interaction_at,
                    now
                ])?;
                insert_tags(conn, conn.last_insert_rowid(), &tags)?;
                inserted += 1;
            }
            Some(id) => {
                update.execute(params![
                    id,
                    r.name,
                    r.locale,
                    r.timezone,
                    r.tags.as_deref().map(join_tags),
                    attrs,
                    r.subscribed,
                    r.last_interaction_at,
                    now
                ])?;
                if let Some(tags) = &r.tags {
                    clear_tags.execute(params![id])?;
                    insert_tags(conn, id, tags)?;
                }
                updated += 1;
            }
        }
    }
    Ok((inserted, updated))
}

/// The columns `member_from_row` expects, in order.
pub const MEMBER_COLUMNS: &str = "m.id, m.channel, m.channel_user_id, m.name, m.locale, m.timezone, m.tags, m.attributes, m.subscribed, m.last_interaction_at";

/// Maps a row selected with [`MEMBER_COLUMNS`] (starting at column `at`).
pub fn member_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Member> {
    // Read in place: only the pieces are copied out.
    let tags = row.get_ref(at + 6)?.as_str()?;
    let attrs = row.get_ref(at + 7)?.as_str()?;
    Ok(Member {
        id: row.get(at)?,
        channel: row.get(at + 1)?,
        channel_user_id: row.get(at + 2)?,
        name: row.get(at + 3)?,
        locale: row.get(at + 4)?,
        timezone: row.get(at + 5)?,
        tags: if tags.is_empty() {
            Vec::new()
        } else {
            tags.split(';').map(String::from).collect()
        },
        attributes: match attrs {
            "" | "{}" => serde_json::Map::new(),
            _ => match serde_json::from_str(attrs) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            },
        },
        subscribed: row.get(at + 8)?,
        last_interaction_at: row.get(at + 9)?,
    })
}

/// Members matching an audience's SQL filter (a boolean expression over
/// `members m` with its parameters), in id order after `after`: one page of
/// a walk that never holds a whole audience in memory.
pub fn page_where(
    conn: &Connection,
    filter_sql: &str,
    args: &[crate::model::SqlValue],
    after: MemberId,
    limit: usize,
) -> Result<Vec<Member>> {
    let q = format!(
        "SELECT {MEMBER_COLUMNS} FROM members m WHERE ({filter_sql}) AND m.id > ?{} ORDER BY m.id LIMIT {limit}",
        args.len() + 1
    );
    let mut stmt = conn.prepare_cached(&q)?;
    let params = args
        .iter()
        .cloned()
        .chain(std::iter::once(crate::model::SqlValue::Integer(after)));
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        member_from_row(r, 0)
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Members matching an audience's compiled `where` (see [`page_where`]).
pub fn count_where(
    conn: &Connection,
    filter_sql: &str,
    args: &[crate::model::SqlValue],
) -> Result<u64> {
    let q = format!("SELECT count(*) FROM members m WHERE ({filter_sql})");
    let n: i64 = conn.query_row(&q, rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    Ok(n as u64)
}

/// How many of a channel's members [`sample`] looks at: a bounded walk of
/// the (channel, channel_user_id) index, whatever the channel's size.
const SAMPLE_SCAN: u32 = 2000;

/// A subscribed member of `channel` with `locale`, among its first
/// [`SAMPLE_SCAN`] members (to show a template as such a member gets it).
pub fn sample(conn: &Connection, channel: &str, locale: &str) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM (SELECT * FROM members
                 WHERE channel = ?1 AND subscribed = 1 LIMIT {SAMPLE_SCAN}) m
             WHERE m.locale = ?2 LIMIT 1"
        ))?
        .query_row(params![channel, locale], |r| member_from_row(r, 0))
        .optional()?)
}

pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM members", [], |r| r.get::<_, i64>(0))? as u64)
}

pub fn get(conn: &Connection, id: MemberId) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.id = ?1"
        ))?
        .query_row([id], |r| member_from_row(r, 0))
        .optional()?)
}

pub fn find(conn: &Connection, channel: &str, user: &str) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.channel = ?1 AND m.channel_user_id = ?2"
        ))?
        .query_row(params![channel, user], |r| member_from_row(r, 0))
        .optional()?)
}

#[cfg(test)]
mod proptests {
    use super::*;
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
                        prop_assert!(!reason.is_empty());
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
        let rows: Vec<(u64, std::result::Result<String, String>)> =
            RowReader::new(Format::JsonLines, &data[..])
                .unwrap()
                .map(|(line, row)| (line, row.map(|r| r.channel_user_id)))
                .collect();
        let lines: Vec<u64> = rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3, 5, 6, 7], "{rows:?}");
        let users: Vec<&str> = rows.iter().filter_map(|(_, r)| r.as_deref().ok()).collect();
        assert_eq!(users, ["a", "b", "c"], "{rows:?}");
        assert!(
            rows[1].1.as_ref().unwrap_err().contains("not UTF-8"),
            "{rows:?}"
        );
        assert!(rows[3].1.as_ref().unwrap_err().contains("JSON"), "{rows:?}");
        assert!(
            rows[4].1.as_ref().unwrap_err().contains("not UTF-8"),
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
