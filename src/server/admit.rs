//! What a connection goes through before its session: its PROXY header when the server reads
//! them, then its source's cap. The header comes first: it says who the source is.

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::Arc;
#[cfg(feature = "proxy")]
use std::time::Duration;
use std::time::Instant;

use async_io::Async;

use super::Peer;
use super::ServerConfig;
use super::sources::{Slot, Sources};
use super::stop::Stopped;
#[cfg(feature = "proxy")]
use crate::proxy::{Header, ProxyConfig};
use crate::session::CloseReason;

/// The checks every connection passes, from the server's config.
pub(crate) struct Gate {
    /// The header's settings, and how long it may take: the idle timeout when that is shorter.
    #[cfg(feature = "proxy")]
    proxy: Option<(ProxyConfig, Duration)>,
    sources: Option<Arc<Sources>>,
}

/// A connection let through: who it is from, and its place in its source's count.
pub(crate) struct Admitted {
    pub(crate) peer: Peer,
    pub(crate) slot: Option<Slot>,
}

/// A connection turned away, closed as soon as this is dropped.
pub(crate) enum Refused {
    /// Closed for this reason, logged as its close: `proxy header: ...`, or a stop.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    Closed(Peer, CloseReason),
    /// Over its source's cap: logged by the counts, at most once in a while per source, and
    /// counted as a close for the reason [`Refused::SOURCE_LIMIT`].
    SourceLimit,
}

impl Refused {
    /// The close reason of a connection over its source's cap.
    pub(crate) const SOURCE_LIMIT: &'static str = "source limit";
}

impl Gate {
    pub(crate) fn new(config: &ServerConfig) -> Gate {
        let sources = (config.max_per_source > 0).then(|| Sources::new(config.max_per_source));
        #[cfg(feature = "proxy")]
        let proxy = config.proxy.clone().map(|proxy| {
            let timeout = config.echo.idle_timeout.map_or(proxy.timeout, |idle| idle.min(proxy.timeout));
            (proxy, timeout)
        });
        Gate {
            #[cfg(feature = "proxy")]
            proxy,
            sources,
        }
    }

    /// Whether a connection has anything to pass: a header to read or a cap to respect.
    pub(crate) fn checks(&self) -> bool {
        #[cfg(feature = "proxy")]
        if self.proxy.is_some() {
            return true;
        }
        self.sources.is_some()
    }

    /// Reads the header (unless `stop` comes first) and takes a place in the source's count.
    pub(crate) async fn admit<S>(
        &self,
        socket: &Async<S>,
        peer: Peer,
        stop: &mut Stopped,
    ) -> Result<Admitted, Refused>
    where
        S: AsFd,
        for<'a> &'a S: Read,
    {
        let peer = self.proxied(socket, peer, stop).await?;
        let slot = match (&self.sources, peer.ip()) {
            (Some(sources), Some(ip)) => Some(sources.enter(ip, Instant::now()).ok_or(Refused::SourceLimit)?),
            // Unix peers without a header have no address to count by.
            _ => None,
        };
        Ok(Admitted { peer, slot })
    }

    /// Who the connection is from, by its PROXY header.
    #[cfg(feature = "proxy")]
    async fn proxied<S>(&self, socket: &Async<S>, peer: Peer, stop: &mut Stopped) -> Result<Peer, Refused>
    where
        S: AsFd,
        for<'a> &'a S: Read,
    {
        let Some((config, timeout)) = &self.proxy else { return Ok(peer) };
        let refused = |peer, why: String| Err(Refused::Closed(peer, CloseReason::Protocol(why)));
        if let Some(ip) = peer.ip()
            && !config.accepts(ip)
        {
            return refused(peer, "proxy header: not accepted from this address".into());
        }
        match stop.until(super::proxy::read_header(socket, *timeout)).await {
            None => Err(Refused::Closed(peer, CloseReason::Shutdown)),
            Some(Err(err)) => refused(peer, format!("proxy header: {err}")),
            Some(Ok(Header::Local)) => Ok(peer),
            Some(Ok(Header::Proxied { source, .. })) => Ok(Peer::Proxied { source, via: Box::new(peer) }),
        }
    }

    #[cfg(not(feature = "proxy"))]
    async fn proxied<S>(&self, _: &Async<S>, peer: Peer, _: &mut Stopped) -> Result<Peer, Refused> {
        Ok(peer)
    }
}
