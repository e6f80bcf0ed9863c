//! What the pipeline decided for one request: the reply, what was done and by which
//! policy, and whether the answer may be repeated — and to whom.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;

use super::client::ClientClass;
use crate::answer::Reply;
use crate::identity::Identity;
use crate::label::{Phase, QueryAction};
use crate::policy::Decision;
use crate::resolve::Resolved;

/// The pipeline's answer to a [`super::Request`].
#[derive(Debug)]
pub struct Outcome {
    /// The reply to send.
    pub reply: Reply,
    /// What was done.
    pub action: QueryAction,
    /// The policy that decided (or, for [`QueryAction::Resolve`], picked the upstreams):
    /// an index into the runtime's policies.
    pub policy: Option<usize>,
    /// The phase it decided in.
    pub phase: Option<Phase>,
    /// The decision, when a policy made one (for `explain` and policy tests).
    pub decision: Option<Decision>,
    /// The CNAME target of the answer the deciding policy matched (CNAME uncloaking).
    pub cname: Option<String>,
    /// The answer came from the message cache.
    pub cached: bool,
    /// Something resolved on the way was served stale.
    pub stale: bool,
    /// The shortest cache life left of the answers resolved on the way (`None`: nothing
    /// was resolved): an answer built on them may not be repeated longer.
    pub fresh_for: Option<u32>,
    /// The longest any record of the reply may live (an external verdict took part and
    /// holds this long).
    pub ttl_cap: Option<u32>,
    /// The client's device and user, if known.
    pub identity: Option<Arc<Identity>>,
    /// To whom this answer may be repeated by the packet cache (`None`: never).
    pub replay: Option<ClientClass>,
    /// The configuration generation that decided.
    pub generation: u64,
}

impl Outcome {
    /// An outcome with nothing decided yet.
    pub(super) fn new(generation: u64) -> Self {
        Self {
            reply: Reply::default(),
            action: QueryAction::Allow,
            policy: None,
            phase: None,
            decision: None,
            cname: None,
            cached: false,
            stale: false,
            fresh_for: None,
            ttl_cap: None,
            identity: None,
            replay: None,
            generation,
        }
    }

    /// Ends with a bare rcode and what was done.
    pub(super) fn with(mut self, action: QueryAction, reply: Reply) -> Self {
        self.action = action;
        self.reply = reply;
        self.replay = None;
        self
    }

    /// Notes an answer resolved on the way.
    pub(super) fn resolved(&mut self, r: &Resolved) {
        self.cached = r.cached;
        self.stale |= r.stale;
        let fresh = r.fresh_for();
        self.fresh_for = Some(self.fresh_for.map_or(fresh, |f| f.min(fresh)));
    }

    /// Notes an external verdict that took part and holds for `life`: the answer is
    /// repeated no longer, and its records live no longer.
    pub(super) fn verdict_lives(&mut self, life: std::time::Duration) {
        let secs = u32::try_from(life.as_secs()).unwrap_or(u32::MAX);
        self.ttl_cap = Some(self.ttl_cap.map_or(secs, |c| c.min(secs)));
        self.fresh_for = Some(self.fresh_for.map_or(secs, |f| f.min(secs)));
    }

    /// A failure to resolve: SERVFAIL with its EDE; never repeated.
    pub(super) fn failed(&mut self, e: &crate::resolve::Error) {
        self.action = QueryAction::Error;
        self.reply = failure_reply(e);
        self.replay = None;
    }

    /// Whether the packet cache may repeat this answer.
    pub fn is_replayable(&self) -> bool {
        self.replay.is_some()
            && !self.stale
            && matches!(
                self.reply.rcode,
                ResponseCode::NoError | ResponseCode::NXDomain
            )
    }
}

/// SERVFAIL with the EDE a resolution failure carries.
pub(super) fn failure_reply(e: &crate::resolve::Error) -> Reply {
    Reply::rcode(ResponseCode::ServFail).with_ede(e.ede_code(), e.to_string())
}
