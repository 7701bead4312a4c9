//! Fuzzes the PROXY header parser the server reads every connection's first bytes with.
//!
//! What must hold for any input: no panic; a complete header is at most its version's maximum,
//! parses the same on its own, and every shorter prefix of it is "not yet complete" (so the
//! server, which parses what has arrived so far, never decides early); an input still incomplete
//! has only incomplete prefixes; and an address a header names survives being sent again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smol_echo::proxy::{Header, MAX_V2_LEN, Version, encode, parse};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    let shortest_undecided = match &whole {
        Ok(Some((header, len))) => {
            assert!(*len <= data.len() && *len <= MAX_V2_LEN);
            assert_eq!(parse(&data[..*len]).unwrap(), Some((*header, *len)));
            *len
        }
        Ok(None) => data.len(),
        Err(_) => 0,
    };
    for end in 0..shortest_undecided {
        assert_eq!(parse(&data[..end]).unwrap(), None, "prefix of {end} bytes");
    }
    if let Ok(Some((Header::Proxied { source, destination }, _))) = whole {
        // Mapped addresses are sent as IPv4 on purpose: only plain ones come back as they were.
        let plain = |addr: std::net::SocketAddr| addr.ip().to_canonical() == addr.ip();
        if plain(source) && plain(destination) {
            for version in [Version::V1, Version::V2] {
                let again = parse(&encode(version, Some((source, destination)))).unwrap();
                assert_eq!(again.map(|(header, _)| header), Some(Header::Proxied { source, destination }));
            }
        }
    }
});
