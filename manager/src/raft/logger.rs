//! Routes raft-rs's `slog` records into `tracing` (target `raft`), one level down: raft's `info`
//! (elections, leader changes) becomes `debug`, its `debug` becomes `trace`. Nothing reaches
//! stderr unless the process's tracing subscriber asks for it.

use std::fmt::{self, Write as _};

use slog::{Drain, Level, OwnedKVList, Record};

/// A `slog` drain that forwards to `tracing`.
struct TracingDrain;

/// Collects a record's key-value pairs as ` key=value`.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        Level::Debug | Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !enabled(record.level()) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            Level::Info => tracing::debug!(target: "raft", "{msg}{kv}"),
            Level::Debug | Level::Trace => tracing::trace!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }

    fn is_enabled(&self, level: Level) -> bool {
        enabled(level)
    }
}

/// The logger handed to raft-rs for node `id`.
pub(crate) fn logger(id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("raft_id" => id))
}
