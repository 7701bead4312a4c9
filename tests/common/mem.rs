//! In-memory streams for protocol tests (owned by the protocol-tests helper).
