//! The full path, for TCP and for UDP datagrams the fast path cannot answer: hickory's
//! decoder reads the message, [`crate::pipeline::run`] decides, the reply is put on the
//! wire (EDNS mirrored, EDE attached, UDP answers that do not fit truncated) and the
//! outcome goes to the one exit before the answer leaves.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::net::xfer;
use hickory_server::server::{Request as HRequest, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::Shared;
use crate::answer::Reply;
use crate::clock::Instant;
use crate::label::Protocol;
use crate::pipeline::{DeviceHint, Message, Outcome, Request};
use crate::resolve::Question;
use crate::resolve::forward::EDNS_PAYLOAD;

/// The full path of TCP and UDP.
#[derive(Clone)]
pub struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    /// A handler over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// What [`Handler::serve`] answered.
#[derive(Debug)]
pub struct Served {
    /// The response's header.
    pub info: ResponseInfo,
    /// What the pipeline decided.
    pub outcome: Outcome,
    /// The UDP answer did not fit and went out truncated: not one to repeat.
    pub truncated: bool,
}

/// The pipeline's view of a decoded message.
fn message_of(request: &HRequest) -> Message {
    if request.metadata.op_code != OpCode::Query {
        return Message::NotQuery;
    }
    // RFC 6891 §6.1.3: we speak EDNS version 0 only.
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Message::BadVersion;
    }
    match request.request_info() {
        Err(_) => Message::Malformed,
        Ok(info) => {
            let q = info.query.original();
            Message::Query(Question {
                name: q.name().clone(),
                qtype: q.query_type(),
                qclass: q.query_class(),
                dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
                checking_disabled: request.metadata.checking_disabled,
            })
        }
    }
}

impl Handler {
    /// Answers one decoded request through `response_handle`; `arrival` is when its
    /// datagram was read (`None`: now), `listener` the local address it came to.
    pub async fn serve<R: ResponseHandler>(
        &self,
        request: &HRequest,
        arrival: Option<Instant>,
        listener: Option<std::net::SocketAddr>,
        via: Option<(Protocol, &DeviceHint)>,
        mut response_handle: R,
    ) -> Served {
        let shared = &self.shared;
        let rt = shared.live.load_full();
        let protocol = match (via, request.protocol()) {
            (Some((p, _)), _) => p,
            (None, xfer::Protocol::Udp) => Protocol::Udp,
            (None, _) => Protocol::Tcp,
        };
        let mut req = Request::new(
            &shared.clock,
            request.src().ip(),
            protocol,
            message_of(request),
        );
        if let Some(at) = arrival {
            req.arrival = at;
        }
        req.listener = listener;
        if let Some((_, device)) = via {
            req.device = device.clone();
        }
        let outcome = shared.answer(&rt, &req).await;
        debug!(client = %req.src, action = outcome.action.as_str(),
            policy = outcome.policy.map_or("-", |i| rt.policies.policies[i].name.as_str()),
            rcode = %outcome.reply.rcode, cached = outcome.cached, "decision");

        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        // The response OPT mirrors the request's (no OPT, no EDE): our payload is the
        // client's, clamped to 512..=1232, and the encoder truncates UDP answers to it.
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
            e.set_dnssec_ok(dnssec_ok);
            if let Some((code, text)) = &outcome.reply.ede {
                e.options_mut().insert(ede_option(*code, text));
            }
            e
        });
        let empty = Reply {
            authentic_data: outcome.reply.authentic_data,
            ..Reply::rcode(outcome.reply.rcode)
        };
        let truncated = protocol == Protocol::Udp && !fits(request, &outcome.reply, edns.as_ref());
        // A UDP answer too big for the client is sent as header, question and OPT with TC
        // set (RFC 6891 §7 keeps the OPT, and with it the EDE; hickory's encoder would drop
        // it when it truncates).
        let reply = if truncated { &empty } else { &outcome.reply };
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut md = Metadata::response_from_request(&request.metadata);
        md.recursion_available = true;
        md.truncation = truncated;
        md.response_code = reply.rcode;
        // RFC 6840 §5.7: AD goes back to a client that set DO or AD.
        md.authentic_data = reply.authentic_data && (dnssec_ok || request.metadata.authentic_data);
        let response = builder.build(
            md,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        // Recorded before the answer leaves: whoever has the answer sees it counted.
        shared.record(&rt, &req, &outcome);
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "failed to send response");
                let mut md = Metadata::response_from_request(&request.metadata);
                md.response_code = hickory_proto::op::ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: md,
                    counts: HeaderCounts::default(),
                })
            }
        };
        Served {
            info,
            outcome,
            truncated,
        }
    }
}

/// Whether `reply` fits the client's UDP payload. Measured exactly only when the cheap
/// bound says it may not.
fn fits(request: &HRequest, reply: &Reply, edns: Option<&Edns>) -> bool {
    let limit = edns.map_or(512, |e| usize::from(e.max_payload()));
    let question_len = request
        .queries
        .queries()
        .first()
        .map_or(0, |q| q.original().name().len() + 5);
    let opt_len = edns.map_or(0, |_| {
        11 + reply.ede.as_ref().map_or(0, |(_, t)| t.len() + 6)
    });
    reply.surely_fits(12 + question_len + opt_len, limit)
        || encoded_len(request, reply, edns) <= limit
}

fn ede_option(code: u16, text: &str) -> EdnsOption {
    let mut data = code.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    EdnsOption::Unknown(u16::from(EdnsCode::Unknown(15)), data)
}

/// The exact encoded size of a reply (with name compression), for the rare large answer.
fn encoded_len(request: &HRequest, reply: &Reply, edns: Option<&Edns>) -> usize {
    let mut m = hickory_proto::op::Message::new(
        request.metadata.id,
        hickory_proto::op::MessageType::Response,
        OpCode::Query,
    );
    m.queries = request
        .queries
        .queries()
        .iter()
        .map(|q| q.original().clone())
        .collect();
    m.answers = reply.answers.clone();
    m.authorities = reply.authorities.clone();
    m.additionals = reply.additionals.clone();
    if let Some(e) = edns {
        m.set_edns(e.clone());
    }
    m.to_vec().map_or(usize::MAX, |v| v.len())
}
