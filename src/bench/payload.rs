//! The bytes a bench sends: lines or raw messages, each stamped with its sequence number so
//! that a lost, doubled or reordered one shows.

use crate::session::Mode;

/// What one line (message, datagram) is called in messages.
pub(crate) fn unit(mode: Mode) -> &'static str {
    match mode {
        Mode::Line => "line",
        Mode::Raw => "message",
    }
}

/// The lines (raw messages) of one connection before their sequence number.
pub(crate) fn template(mode: Mode, connection: usize, size: usize) -> Vec<u8> {
    match mode {
        Mode::Line => line_template(connection, size),
        Mode::Raw => raw_template(connection, size),
    }
}

/// Writes `seq` over the start of `line`, as [`template`] leaves room for it.
pub(crate) fn stamp(mode: Mode, line: &mut [u8], seq: u64) {
    match mode {
        Mode::Line => stamp_hex(line, seq),
        Mode::Raw => stamp_binary(line, seq),
    }
}

/// A filler of letters that depends on the connection, then CR LF. Never the sentinel (too
/// long), and no CR or LF before the end, so the server sees exactly the lines meant.
fn line_template(connection: usize, size: usize) -> Vec<u8> {
    // Letters after f, so the filler never looks like part of the number.
    let filler = (0..size - 2).map(|i| b'g' + ((i + connection) % 20) as u8);
    filler.chain(*b"\r\n").collect()
}

/// Writes `seq` in hex over the start of `line`, in up to 16 digits and never over the CR LF:
/// each line of a connection differs from the others, so a lost, doubled or reordered line shows.
fn stamp_hex(line: &mut [u8], seq: u64) {
    let digits = (line.len() - 2).min(16);
    let mut rest = seq;
    for byte in line[..digits].iter_mut().rev() {
        *byte = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

/// Bytes of a raw message (after its sequence number): what a line server would act on (CR LF,
/// the sentinel line `.`, a bare CR) and both ends of the byte range, so a server that is not
/// transparent shows.
const RAW_MARKS: &[u8] = b"\r\n.\r\n\0\xff\r";

/// Bytes of a raw message taken by its sequence number.
pub(crate) const SEQ_BYTES: usize = 8;

/// Eight bytes of sequence number (zero here), [`RAW_MARKS`], then every byte value in a
/// pattern that depends on the connection and repeats every 256 bytes.
fn raw_template(connection: usize, size: usize) -> Vec<u8> {
    let byte = |i: usize| match i.checked_sub(SEQ_BYTES) {
        Some(mark) if mark < RAW_MARKS.len() => RAW_MARKS[mark],
        // 157 is odd: 256 consecutive bytes take every value once.
        _ => (i * 157 + connection * 59) as u8,
    };
    (0..size).map(byte).collect()
}

/// Writes `seq` little-endian over the first eight bytes of `message`.
fn stamp_binary(message: &mut [u8], seq: u64) {
    message[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bench::config::BenchConfig;

    /// Line or message `seq` of `connection`, as the ledger sends it.
    fn stamped(mode: Mode, connection: usize, size: usize, seq: u64) -> Vec<u8> {
        let mut bytes = template(mode, connection, size);
        stamp(mode, &mut bytes, seq);
        bytes
    }

    pub(in crate::bench) fn line(connection: usize, size: usize, seq: u64) -> Vec<u8> {
        stamped(Mode::Line, connection, size, seq)
    }

    #[test]
    fn lines_have_the_exact_size_one_line_end_and_are_never_the_sentinel() {
        for size in [BenchConfig::MIN_SIZE, 9, 17, 18, 64, 16384] {
            for seq in [0, 1, 0xff, u64::MAX] {
                let line = line(3, size, seq);
                assert_eq!(line.len(), size);
                assert!(line.ends_with(b"\r\n"));
                let body = &line[..size - 2];
                assert!(!body.contains(&b'\r') && !body.contains(&b'\n'), "{line:?}");
                assert_ne!(line, b".\r\n");
            }
        }
    }

    #[test]
    fn lines_differ_by_sequence_and_connection() {
        assert_eq!(&line(0, 24, 0x1234)[..18], b"0000000000001234wx");
        assert_ne!(line(0, 8, 1), line(0, 8, 2));
        assert_ne!(line(0, 64, 1), line(1, 64, 1));
    }

    pub(in crate::bench) fn message(connection: usize, size: usize, seq: u64) -> Vec<u8> {
        stamped(Mode::Raw, connection, size, seq)
    }

    #[test]
    fn raw_messages_hold_what_a_line_server_would_act_on_and_every_byte_value() {
        for size in [BenchConfig::MIN_SIZE, 9, 64, 300] {
            assert_eq!(message(0, size, 1).len(), size);
        }
        let long = message(5, 8 + 256 + RAW_MARKS.len(), 0x0102);
        assert_eq!(&long[..10], b"\x02\x01\0\0\0\0\0\0\r\n");
        assert!(long.windows(5).any(|w| w == b"\r\n.\r\n"));
        let values: std::collections::HashSet<u8> = long.iter().copied().collect();
        assert_eq!(values.len(), 256);
        assert_ne!(message(0, 64, 1), message(0, 64, 2));
        assert_ne!(message(0, 64, 1), message(1, 64, 1));
    }
}
