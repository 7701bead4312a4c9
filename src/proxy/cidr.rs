//! An address block, `10.0.0.0/8` or `2001:db8::/32`: the balancers a server takes headers from.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 address block: an address and how many of its leading bits a member shares.
/// A bare address is a block of one. Host bits past the prefix are cleared.
///
/// An IPv4 address mapped into IPv6 (`::ffff:10.1.2.3`, how a dual-stack socket shows IPv4
/// peers) belongs to the IPv4 blocks it would as plain IPv4.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::Cidr;
///
/// let block: Cidr = "10.1.2.3/8".parse()?;
/// assert_eq!(block.to_string(), "10.0.0.0/8");
/// assert!(block.contains("10.200.0.1".parse().unwrap()));
/// assert!(block.contains("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!block.contains("11.0.0.1".parse().unwrap()));
/// assert_eq!("::1".parse::<Cidr>()?.to_string(), "::1/128");
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                mask(ip.to_bits().into(), self.prefix, 32) == network.to_bits().into()
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                mask(ip.to_bits(), self.prefix, 128) == network.to_bits()
            }
            _ => false,
        }
    }
}

/// `bits` (an address of `width` bits) with everything past the first `prefix` bits cleared.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    match u32::from(width - prefix) {
        128 => 0,
        host => bits >> host << host,
    }
}

impl FromStr for Cidr {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<Cidr> {
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid address block '{text}': use an address and a prefix length, e.g. 10.0.0.0/8 or fd00::/8"
                ),
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            // Digits only: u8's parser would also take "+8".
            Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) => {
                prefix.parse().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
            None => width,
        };
        if prefix > width {
            return Err(invalid());
        }
        let network = match address {
            IpAddr::V4(ip) => IpAddr::V4((mask(ip.to_bits().into(), prefix, 32) as u32).into()),
            IpAddr::V6(ip) => IpAddr::V6(mask(ip.to_bits(), prefix, 128).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn prefixes_from_none_to_every_bit() {
        assert!(cidr("0.0.0.0/0").contains("203.0.113.7".parse().unwrap()));
        assert!(!cidr("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(cidr("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(cidr("127.0.0.2/32").contains("127.0.0.2".parse().unwrap()));
        assert!(!cidr("127.0.0.2/32").contains("127.0.0.3".parse().unwrap()));
        assert!(cidr("2001:db8:1:2::/64").contains("2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!cidr("2001:db8:1:2::/64").contains("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for bad in
            ["", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "::1/129", "host/8", "10.0.0.0/8/8", "[::1]/128"]
        {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
