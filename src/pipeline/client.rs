//! Who the client is, as far as the policies can see, and — from the very same value — how
//! far the packet cache must tell it apart from other clients.
//!
//! A cached answer may be replayed to another client only if every client-dependent fact
//! the policies read is the same for both. [`Client::class`] destructures the whole
//! [`Client`], so a fact added here (a DoH token's device, a webhook verdict) does not
//! compile until the class says what it means for replay.

use std::net::IpAddr;
use std::sync::Arc;

use super::request::DeviceHint;
use crate::identity::Identity;
use crate::policy::PolicySet;
use crate::runtime::Runtime;

/// The client-dependent facts of one query.
#[derive(Debug, Clone, Copy)]
pub struct Client<'r> {
    /// `dns.src_ip` (canonical); also the source of `dns.src.geo.*`.
    pub ip: IpAddr,
    /// The device (and user) behind the query: `identity.*`.
    pub identity: Option<&'r Arc<Identity>>,
    /// `dns.location`.
    pub location: Option<&'r str>,
}

/// How a client is told apart from others, as far as the policies can tell: the part of a
/// packet-cache key that stands for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientClass {
    /// The policies cannot tell clients apart (there are none, or they never look at
    /// the client).
    Anyone,
    /// By address, identity and location: a policy reads `dns.src_ip` or the client's
    /// GeoIP (and a device named by a DoH token or SNI label may share an address with
    /// others), or an `external` policy may ask about this very client.
    Ip(IpAddr, usize, usize),
    /// By identity and location (the addresses of the directory's entries, stable for
    /// one configuration — and a packet-cache entry never outlives its configuration).
    Identity(usize, usize),
}

impl<'r> Client<'r> {
    /// Identifies the client of a query from `ip` naming `device` (SPEC §5, §10): the
    /// device of a token, else of the address; the location of the address.
    pub fn identify(rt: &'r Runtime, ip: IpAddr, device: &DeviceHint) -> Self {
        let ip = ip.to_canonical();
        // A token or label naming nobody (let in by `unknown_client = "anonymous"`)
        // counts as none: the address decides.
        // A token or label may name a location instead (an office's DoH URL).
        let (identity, location) = match device {
            DeviceHint::Token(t) => rt.directory.named_by_token(t),
            DeviceHint::Label(l) => (
                rt.directory.identity_for_label(l).map(|(i, _)| i),
                rt.directory.location_for_label(l),
            ),
            DeviceHint::None => (None, None),
        };
        let identity = identity.or_else(|| rt.directory.identity_for_ip(ip));
        let location = location.or_else(|| rt.directory.location_for_ip(ip));
        Self {
            ip,
            identity,
            location,
        }
    }

    /// How far `policies` tell this client apart from others.
    pub fn class(&self, policies: &PolicySet) -> ClientClass {
        // Every fact, by name: a new one must be placed here.
        let Self {
            ip,
            identity,
            location,
        } = *self;
        if policies.policies.is_empty() {
            ClientClass::Anyone
        } else {
            let identity = identity.map_or(0, |i| Arc::as_ptr(i) as usize);
            let location = location.map_or(0, |l| l.as_ptr() as usize);
            // An external verdict is about one client (its request names the address,
            // device, user, groups, location and country): never replayed to another.
            if policies.needs_src_ip || policies.needs_src_geo || !policies.externals.is_empty() {
                ClientClass::Ip(ip, identity, location)
            } else {
                ClientClass::Identity(identity, location)
            }
        }
    }
}
