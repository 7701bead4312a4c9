//! Where the server reports what happens as it happens, beside the totals of its summary: the
//! metrics, when they are built in and the caller gave some. Without the `metrics` feature the
//! sink is empty and every report compiles to nothing.

use std::time::Duration;

use crate::session::Session;

/// The kind of listener a connection or datagram came through: what the metrics split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Tcp,
    Tls,
    Unix,
    Udp,
}

impl ListenerKind {
    /// Every kind, in the order of their counters.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [ListenerKind; 4] =
        [ListenerKind::Tcp, ListenerKind::Tls, ListenerKind::Unix, ListenerKind::Udp];

    /// The value of the `listener` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Unix => "unix",
            ListenerKind::Udp => "udp",
        }
    }

    /// Whether it carries connections, rather than datagrams.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn is_stream(self) -> bool {
        self != ListenerKind::Udp
    }
}

/// The server's live reports. Cloned into every task that reports; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sink {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Sink {
    /// A connection was accepted on a listener of `kind`.
    pub(crate) fn opened(&self, kind: ListenerKind) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.opened(kind);
        }
    }

    /// A connection's session ended, after `duration`: its lines and bytes count from now.
    pub(crate) fn closed(&self, kind: ListenerKind, session: &Session, duration: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.closed(kind, session, duration);
        }
    }

    /// A datagram of `len` bytes was echoed, or (`None`) refused for its source port.
    pub(crate) fn datagram(&self, len: Option<usize>) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.datagram(len);
        }
    }

    /// An accept failed.
    pub(crate) fn accept_failed(&self) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.accept_failed();
        }
    }
}
