//! A few lines of logger: the library's `log` records go to stderr, one line each.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        // stderr is unbuffered and locked per call: one record stays one line. A closed stderr
        // must not take the server down with it.
        writeln!(std::io::stderr().lock(), "{prefix}{}", record.args()).ok();
    }

    fn flush(&self) {}
}

/// Sends log records up to `level` to stderr.
pub(crate) fn init(level: LevelFilter) {
    // Fails only if a logger is already set, and then records already go somewhere.
    log::set_logger(&Stderr).ok();
    log::set_max_level(level);
}
