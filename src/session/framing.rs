//! Finding complete CR LF lines in buffered bytes, without copying them.
//!
//! The echo path never splits lines apart: it asks [`scan`] where the last complete line in the
//! buffer ends and writes everything before that point with one write.

use memchr::memchr_iter;

/// Why a session must end once the lines before the stop point are echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The line `.\r\n` arrived.
    Sentinel,
    /// A line grew past the maximum length.
    TooLong,
}

/// What [`scan`] found in a buffer that starts at the beginning of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// `buf[..echo_end]` is made of complete lines that are owed an echo.
    pub(crate) echo_end: usize,
    /// How many complete lines `buf[..echo_end]` holds.
    pub(crate) lines: u64,
    /// Set when the bytes after `echo_end` must not be echoed and the session ends.
    pub(crate) closing: Option<Closing>,
}

/// Scans `buf`, which starts at the first byte of a line, for complete lines.
///
/// `from` is how far an earlier scan of the same line already looked: it holds no line end, so
/// the search for LF resumes there (a CR just before `from` still pairs with an LF at `from`).
/// That keeps a line that arrives one byte at a time linear instead of quadratic.
pub(crate) fn scan(buf: &[u8], from: usize, max_line: usize) -> Scan {
    let mut line_start = 0;
    let mut lines = 0;
    let closing = |echo_end, lines, why| Scan { echo_end, lines, closing: Some(why) };
    for lf in memchr_iter(b'\n', &buf[from..]).map(|i| from + i) {
        // A bare LF (no CR of this same line before it) is data, not a line end.
        if lf == line_start || buf[lf - 1] != b'\r' {
            continue;
        }
        let len = lf + 1 - line_start;
        if len > max_line {
            return closing(line_start, lines, Closing::TooLong);
        }
        if len == 3 && buf[line_start] == b'.' {
            return closing(line_start, lines, Closing::Sentinel);
        }
        lines += 1;
        line_start = lf + 1;
    }
    if buf.len() - line_start > max_line {
        return closing(line_start, lines, Closing::TooLong);
    }
    Scan { echo_end: line_start, lines, closing: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(echo_end: usize, lines: u64) -> Scan {
        Scan { echo_end, lines, closing: None }
    }

    #[test]
    fn finds_every_complete_line() {
        assert_eq!(scan(b"ab\r\ncd\r\nef", 0, 100), complete(8, 2));
        assert_eq!(scan(b"", 0, 100), complete(0, 0));
        assert_eq!(scan(b"\r\n", 0, 100), complete(2, 1));
    }

    #[test]
    fn bare_lf_and_bare_cr_are_data() {
        assert_eq!(scan(b"a\nb\rc\r\n", 0, 100), complete(7, 1));
        assert_eq!(scan(b"\n\r\n", 0, 100), complete(3, 1));
        assert_eq!(scan(b"a\n\rb", 0, 100), complete(0, 0));
        assert_eq!(scan(b"\r\r\n", 0, 100), complete(3, 1));
    }

    #[test]
    fn lf_after_a_line_end_is_not_paired_with_the_previous_cr() {
        // "a\r\n" ends a line; the next "\n" starts a new line and is data.
        assert_eq!(scan(b"a\r\n\nb", 0, 100), complete(3, 1));
    }

    #[test]
    fn resumes_where_the_last_scan_stopped() {
        let buf = b"abc\r\ndef";
        assert_eq!(scan(buf, 4, 100), complete(5, 1));
        // CR at the end of the earlier scan, LF in the new bytes.
        assert_eq!(scan(b"ab\r\n", 3, 100), complete(4, 1));
    }

    #[test]
    fn sentinel_stops_before_itself() {
        let s = scan(b"a\r\n.\r\nb\r\n", 0, 100);
        assert_eq!(s, Scan { echo_end: 3, lines: 1, closing: Some(Closing::Sentinel) });
        assert_eq!(scan(b".\r\n", 0, 100).closing, Some(Closing::Sentinel));
    }

    #[test]
    fn near_sentinels_are_ordinary_lines() {
        for line in [&b"..\r\n"[..], b" .\r\n", b".\n\r\n", b". \r\n", b".\r\r\n"] {
            assert_eq!(scan(line, 0, 100), complete(line.len(), 1), "{line:?}");
        }
        // ".\n" alone ends no line.
        assert_eq!(scan(b".\n", 0, 100), complete(0, 0));
    }

    #[test]
    fn line_of_exactly_max_is_echoed_one_over_is_not() {
        let exact = [&[b'x'; 8][..], b"\r\n"].concat();
        assert_eq!(scan(&exact, 0, 10), complete(10, 1));
        let over = [&[b'x'; 9][..], b"\r\n"].concat();
        let s = scan(&over, 0, 10);
        assert_eq!(s, Scan { echo_end: 0, lines: 0, closing: Some(Closing::TooLong) });
    }

    #[test]
    fn partial_line_past_max_stops_without_waiting_for_crlf() {
        let buf = [&b"ok\r\n"[..], &[b'x'; 11]].concat();
        let s = scan(&buf, 0, 10);
        assert_eq!(s, Scan { echo_end: 4, lines: 1, closing: Some(Closing::TooLong) });
        // A partial line of exactly max bytes may still end at EOF: keep waiting.
        assert_eq!(scan(&[b'x'; 10], 0, 10), complete(0, 0));
    }
}
