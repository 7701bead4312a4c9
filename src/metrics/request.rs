//! The metrics endpoint's reading of an HTTP/1.x request head: a pure function of the bytes
//! received so far, so that it can be tested and fuzzed without a socket.

/// The most bytes of request head read: Prometheus sends a few hundred.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// What the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200, the metrics.
    Metrics,
    /// 404: a path other than `/metrics`.
    NotFound,
    /// 405: a method other than `GET` on `/metrics`.
    MethodNotAllowed,
    /// 400: not an HTTP/1.x request head.
    BadRequest,
    /// 431: no end of the head within [`MAX_HEAD`] bytes.
    TooLarge,
}

impl Answer {
    /// The status line's code and reason.
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            Answer::Metrics => (200, "OK"),
            Answer::NotFound => (404, "Not Found"),
            Answer::MethodNotAllowed => (405, "Method Not Allowed"),
            Answer::BadRequest => (400, "Bad Request"),
            Answer::TooLarge => (431, "Request Header Fields Too Large"),
        }
    }
}

/// What to answer to a request whose first bytes are `head`, or `None` while the head is not
/// complete (it ends with an empty line) and may still grow to [`MAX_HEAD`] bytes.
///
/// Lines may end in CR LF or LF alone, and empty lines before the request line are skipped, as
/// RFC 9112 allows. A query after the path is ignored. The headers are only checked to be
/// `name: value` lines; a body is never read: the answer closes the connection.
pub(crate) fn answer(head: &[u8]) -> Option<Answer> {
    let incomplete = || (head.len() >= MAX_HEAD).then_some(Answer::TooLarge);
    // What follows the last LF is not a line yet.
    let Some(last_lf) = head.iter().rposition(|&b| b == b'\n') else { return incomplete() };
    let mut lines = head[..last_lf]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty());
    let request_line = lines.next();
    let mut headers = lines.clone().take_while(|line| !line.is_empty());
    if request_line.is_none() || !lines.any(<[u8]>::is_empty) {
        return incomplete();
    }
    let Some((method, path)) = request_line.and_then(parse_request_line) else {
        return Some(Answer::BadRequest);
    };
    let headers_ok = headers.all(|line| {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        name.len() < line.len() && is_token(name)
    });
    Some(match () {
        () if !headers_ok => Answer::BadRequest,
        () if path != b"/metrics" => Answer::NotFound,
        () if method != b"GET" => Answer::MethodNotAllowed,
        () => Answer::Metrics,
    })
}

/// `METHOD SP TARGET SP HTTP/1.x`: the method and the target's path, without its query.
fn parse_request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let version_ok =
        matches!(version, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', digit] if digit.is_ascii_digit());
    if parts.next().is_some() || !version_ok || !is_token(method) || !target.starts_with(b"/") {
        return None;
    }
    if target.iter().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Some((method, path))
}

/// An HTTP token (a method, a header name): one or more of RFC 9110's `tchar`.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_answered_with_the_metrics() {
        let cases: [(&[u8], Option<Answer>); 16] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Some(Answer::Metrics)),
            (b"GET /metrics?name[]=up HTTP/1.0\n\n", Some(Answer::Metrics)),
            (b"\r\nGET /metrics HTTP/1.1\r\n\r\n", Some(Answer::Metrics)),
            (b"GET / HTTP/1.1\r\n\r\n", Some(Answer::NotFound)),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", Some(Answer::NotFound)),
            (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", Some(Answer::MethodNotAllowed)),
            (b"get /metrics HTTP/1.1\r\n\r\n", Some(Answer::MethodNotAllowed)),
            (b"GET /metrics HTTP/2.0\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET /metrics\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET http://x/metrics HTTP/1.1\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET /metrics HTTP/1.1\r\n : folded\r\n\r\n", Some(Answer::BadRequest)),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", None),
            (b"GET /metrics HTTP/1.1", None),
            (b"\r\n\r\n\r\n", None),
        ];
        for (head, want) in cases {
            assert_eq!(answer(head), want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_head_that_does_not_end_within_the_limit_is_too_large() {
        let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_HEAD {
            head.extend_from_slice(b"X-Padding: 0123456789abcdef\r\n");
        }
        assert_eq!(answer(&head[..MAX_HEAD - 1]), None);
        assert_eq!(answer(&head[..MAX_HEAD]), Some(Answer::TooLarge));
        assert_eq!(answer(&vec![b'\n'; MAX_HEAD]), Some(Answer::TooLarge));
    }

    #[test]
    fn every_prefix_of_a_request_waits_for_more() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
        for end in 0..request.len() - 1 {
            assert_eq!(answer(&request[..end]), None, "{end}");
        }
    }
}
