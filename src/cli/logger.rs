//! A few lines of logger: the library's `log` records go to stderr, one line each, as text or
//! (`--log-format json`) as one JSON object per line.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    /// The message alone, after `warning: ` or another level's prefix.
    #[default]
    Text,
    /// `{"ts":..., "level":..., "event":..., fields..., "msg":...}`.
    Json,
}

/// Parses `--log-format`: `text` or `json`.
pub(crate) fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err(format!("invalid log format '{text}': use text or json")),
    }
}

static FORMAT: OnceLock<Format> = OnceLock::new();

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            write(record, true);
        }
    }

    fn flush(&self) {}
}

/// Sends log records up to `level` to stderr, written as `format` says.
pub(crate) fn init(level: LevelFilter, format: Format) {
    // Both fail only if already set, and then records already go somewhere.
    FORMAT.set(format).ok();
    log::set_logger(&Stderr).ok();
    log::set_max_level(level);
}

/// Writes a line whatever the level filter: what `-q` keeps (the listening lines, the summary,
/// a fatal error). `event` names it in JSON, beside `fields`; `message` is the whole text line,
/// with no level prefix.
pub(crate) fn always(level: Level, event: &str, fields: &[(&str, Value<'_>)], message: fmt::Arguments<'_>) {
    let mut all = vec![("event", Value::from(event))];
    all.extend(fields.iter().cloned());
    write(&Record::builder().level(level).args(message).key_values(&&all[..]).build(), false);
}

/// Writes `record` as one line; as text, after its level's prefix if `prefixed`.
fn write(record: &Record<'_>, prefixed: bool) {
    let line = match FORMAT.get().copied().unwrap_or_default() {
        Format::Text => {
            let prefix = match record.level() {
                _ if !prefixed => "",
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                Level::Info => "",
                Level::Debug | Level::Trace => "debug: ",
            };
            format!("{prefix}{}\n", record.args())
        }
        Format::Json => json_line(record, SystemTime::now()),
    };
    // stderr is unbuffered and locked per call: one record stays one line. A closed stderr
    // must not take the server down with it.
    std::io::stderr().lock().write_all(line.as_bytes()).ok();
}

/// One record as a JSON object on one line, stamped `now`: `ts`, `level`, `event` (the record's
/// own, or its level's name), the record's other fields, and `msg`, the text line.
fn json_line(record: &Record<'_>, now: SystemTime) -> String {
    let level = match record.level() {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    };
    let mut line = format!("{{\"ts\":\"{}\",\"level\":\"{level}\"", rfc3339(now));
    let kvs = record.key_values();
    if kvs.get(Key::from("event")).is_none() {
        write!(line, ",\"event\":\"{level}\"").ok();
    }
    let mut fields = Fields(&mut line);
    // Fields(..) never fails.
    kvs.visit(&mut fields).ok();
    line.push_str(",\"msg\":");
    push_string(&mut line, &record.args().to_string());
    line.push_str("}\n");
    line
}

/// Writes each key-value pair as a JSON member.
struct Fields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push(',');
        push_string(self.0, key.as_str());
        self.0.push(':');
        if let Some(n) = value.to_u64() {
            write!(self.0, "{n}").ok();
        } else if let Some(n) = value.to_i64() {
            write!(self.0, "{n}").ok();
        } else if let Some(x) = value.to_f64().filter(|x| x.is_finite()) {
            write!(self.0, "{x}").ok();
        } else if let Some(b) = value.to_bool() {
            write!(self.0, "{b}").ok();
        } else {
            push_string(self.0, &value.to_string());
        }
        Ok(())
    }
}

/// `text` as a JSON string, quotes included.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{7f}' => {
                write!(out, "\\u{:04x}", c as u32).ok();
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `time` in RFC 3339, UTC, to the millisecond: `2026-03-01T12:34:56.789Z`.
fn rfc3339(time: SystemTime) -> String {
    // Before 1970 only with a clock set very wrong: written as the epoch.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that the leap day ends each 4-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 7)), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(at(951_868_799, 999)), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(1_798_761_599, 123)), "2026-12-31T23:59:59.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_record_is_one_json_line_with_its_fields_typed() {
        let peer = "127.0.0.1:5".parse::<std::net::SocketAddr>().unwrap();
        let kvs: [(&str, Value<'_>); 5] = [
            ("event", "close".into()),
            ("peer", Value::from_display(&peer)),
            ("lines", 3u64.into()),
            ("duration_s", 1.5f64.into()),
            ("reason", "idle timeout".into()),
        ];
        let record = Record::builder()
            .level(Level::Info)
            .args(format_args!("close \"x\"\n\t\u{1}"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            json_line(&record, at(0, 1)),
            "{\"ts\":\"1970-01-01T00:00:00.001Z\",\"level\":\"info\",\"event\":\"close\",\
             \"peer\":\"127.0.0.1:5\",\"lines\":3,\"duration_s\":1.5,\"reason\":\"idle timeout\",\
             \"msg\":\"close \\\"x\\\"\\n\\t\\u0001\"}\n"
        );
        let warning = Record::builder().level(Level::Warn).args(format_args!("w")).build();
        assert_eq!(
            json_line(&warning, at(0, 0)),
            "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"warn\",\"event\":\"warn\",\"msg\":\"w\"}\n"
        );
    }
}
