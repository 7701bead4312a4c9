//! The load generator: many connections, every echo checked, latency measured.
