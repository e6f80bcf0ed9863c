//! Users, groups, devices and locations from `identities.toml` (SPEC §5).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::diag::Diagnostic;

/// A group a user belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `identity.groups.id`
    pub id: String,
    /// `identity.groups.name`
    pub name: String,
    /// `identity.groups.email` (lowercase)
    pub email: String,
}

/// The identity behind a query: a device and, if assigned, its user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `identity.device_id`
    pub device_id: String,
    /// `identity.email` (lowercase; empty without a user)
    pub email: String,
    /// [`canonical_email`] of `email`, for extended e-mail matching (SPEC §5).
    pub email_canonical: String,
    /// `identity.name`
    pub name: String,
    /// The user's groups.
    pub groups: Vec<Group>,
    /// `identity.saml_attributes`
    pub saml_attributes: HashMap<String, Vec<String>>,
}

/// The loaded identity directory.
#[derive(Debug, Default)]
pub struct Directory {
    _private: (),
}

impl Directory {
    /// Loads `identities.toml`; every problem is a diagnostic with its position.
    pub fn load(_path: &Path) -> Result<Self, Vec<Diagnostic>> {
        Ok(Self::default())
    }

    /// The identity of the device with this source address.
    pub fn identity_for_ip(&self, _ip: IpAddr) -> Option<&Arc<Identity>> {
        None
    }

    /// The identity of the device with this DoH token.
    pub fn identity_for_token(&self, _token: &str) -> Option<&Arc<Identity>> {
        None
    }

    /// The name of the location whose networks hold this address (most specific wins).
    pub fn location_for_ip(&self, _ip: IpAddr) -> Option<&str> {
        None
    }
}

/// The canonical form of an e-mail address for "extended e-mail" matching (SPEC §5):
/// lowercase, `+tag` dropped from the local part, dots removed from the local part.
/// `con.tact+1@Example.com` → `contact@example.com`.
pub fn canonical_email(email: &str) -> String {
    let email = email.to_ascii_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(l, _)| l);
            let local: String = local.chars().filter(|&c| c != '.').collect();
            format!("{local}@{domain}")
        }
        None => email,
    }
}
